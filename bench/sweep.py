"""Sweep CIR settings on the bundled model: forget one built-in topic, measure the others.

    python bench/sweep.py --topic capitals --max-epochs 6 \
        --try "unlearning_rate=1.0" --try "unlearning_rate=2.0 forget_loss=mlp_breaking" \
        --out docs/sweep.md

Each --try is a set of `key=value` overrides (as `cir unlearn --set`). Every setting is run
with the disruption budget as given (default: loss ratio 1.01) and keeps its last in-budget
epoch; the other topics are evaluated on the kept weights. Results go to a JSONL file next
to --out and a Markdown table in --out.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--topic", default="capitals")
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--budget", type=float, default=1.01)
    parser.add_argument("--try", dest="tries", action="append", required=True)
    parser.add_argument("--out", default="docs/sweep.md")
    args = parser.parse_args()

    from cir.data import builtin_topics, load_mcq
    from cir.evaluation import evaluate_cloze
    from cir.models import load_model
    from cir.report import markdown_table
    from cir.commands.options import build_configs
    from cir.loop import general_text_split, run_unlearning

    topics = {t: load_mcq(t) for t in builtin_topics()}
    model, tokenizer = load_model(args.model)
    before = {t: evaluate_cloze(model, tokenizer, qs).accuracy for t, qs in topics.items()}
    retain, heldout = general_text_split(model, tokenizer)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    results_path = Path(args.out).with_suffix(".jsonl")
    rows = []
    for overrides in args.tries:
        model.load_state_dict(original)
        run, method_config = build_configs(overrides=shlex.split(overrides) + [
            f"max_epochs={args.max_epochs}", f"budget={args.budget}"])
        start = time.perf_counter()
        result = run_unlearning(model, tokenizer, topics[args.topic], retain, heldout, run, method_config,
                                progress=False)
        after = {t: evaluate_cloze(model, tokenizer, qs).accuracy for t, qs in topics.items()}
        others = [after[t] - before[t] for t in topics if t != args.topic]
        kept = result.metrics[result.kept_epoch]
        record = {"overrides": overrides, "kept_epoch": result.kept_epoch, "stop": result.stop_reason,
                  "forget_before": before[args.topic], "forget_after": after[args.topic],
                  "worst_other_change": min(others), "mean_other_change": sum(others) / len(others),
                  "loss_ratio": kept["loss_ratio"], "seconds": time.perf_counter() - start,
                  "per_epoch_forget_accuracy": [m.get("forget_accuracy") for m in result.metrics],
                  "per_epoch_loss_ratio": [m["loss_ratio"] for m in result.metrics], "after": after}
        with open(results_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
        rows.append([overrides, result.kept_epoch, f"{before[args.topic]:.3f} -> {after[args.topic]:.3f}",
                     f"{min(others):+.3f}", f"{sum(others) / len(others):+.3f}", f"{kept['loss_ratio']:.4f}",
                     f"{record['seconds']:.0f}"])
    header = ["overrides", "kept epoch", f"{args.topic} accuracy", "worst other topic", "mean other topic",
              "text loss ratio", "seconds"]
    command = "python bench/sweep.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = (f"# CIR sweep on {args.model}: forgetting `{args.topic}`\n\nCommand:\n\n```\n{command}\n```\n\n"
            f"Budget: held-out loss ratio <= {args.budget}; at most {args.max_epochs} epochs; torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads.\n\n" + markdown_table(header, rows) + "\n")
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
