"""Sweep unlearning settings on the bundled model, judged where users judge: V (the held-out
half of the topic) in the worst held-out probe after unlearning, after relearning on T and
after 4-bit quantisation; every other topic's change; general-text loss; seconds per fact.

    python bench/heldout_sweep.py --topic capitals \\
        --try "phrasings=4" --try "phrasings=4 retain_components=16" --out docs/sweep-heldout.jsonl

Each --try is a set of `key=value` overrides (as `cir unlearn --set`) on the defaults. Each
setting runs the demo's protocol (cir.demo: T/V split, unlearning with the other topics'
even-numbered questions watched by the collateral budget, then each attack on its own copy).
Other topics are reported on all their questions and on the odd-numbered ones the run never
watched. One JSON record per setting is appended to --out;
`python bench/heldout_sweep.py --table FILE.jsonl` prints them as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--topic", default="capitals")
    parser.add_argument("--try", dest="tries", action="append", required=True)
    parser.add_argument("--out", default="docs/sweep-heldout.jsonl")
    parser.add_argument("--no-attacks", action="store_true", help="unlearning only (a quicker first look)")
    args = parser.parse_args()

    from cir.attacks import split_forget
    from cir.demo import DemoSettings, attacks, measure, topic_sets
    from cir.models import load_model
    from cir.commands.options import build_configs
    from cir.loop import general_text_split, run_unlearning, watched_retain_sets

    topics = topic_sets()
    model, tokenizer = load_model(args.model)
    settings = DemoSettings(topic=args.topic)
    items = topics[args.topic]
    train, held_out = split_forget(items, settings.split_ratio, settings.seed)
    others = {t: q for t, q in topics.items() if t != args.topic}
    watched = watched_retain_sets(items, others, half=0)
    unwatched = {t: q[1::2] for t, q in others.items()}
    retain, heldout = general_text_split(model, tokenizer)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    before = measure(model, tokenizer, topics, held_out)
    from cir.attacks.suite import accuracies

    before_unwatched = accuracies(model, tokenizer, unwatched)
    for overrides in args.tries:
        model.load_state_dict(original)
        run, method_config = build_configs(overrides=shlex.split(overrides))
        start = time.perf_counter()
        result = run_unlearning(model, tokenizer, items, retain, heldout, run, method_config, progress=True,
                                retain_sets=watched)
        seconds = time.perf_counter() - start
        rows = {"before": before, "after unlearning": measure(model, tokenizer, topics, held_out)}
        if not args.no_attacks:
            rows |= attacks(model, tokenizer, topics, train, held_out, settings)
        after_unwatched = accuracies(model, tokenizer, unwatched)
        kept = result.metrics[result.kept_epoch]
        after = rows["after unlearning"]
        record = {
            "topic": args.topic, "overrides": overrides, "kept_epoch": result.kept_epoch, "stop": result.stop_reason,
            "V_worst": {stage: row["V worst"] for stage, row in rows.items()},
            "V_cloze": {stage: row["V"] for stage, row in rows.items()},
            "probes_after_unlearning": after["_probes"]["probes"],
            "topic_all": {stage: row[args.topic] for stage, row in rows.items()},
            "other_change": {t: round(after[t] - before[t], 4) for t in others},
            "other_questions_lost": {t: round((before[t] - after[t]) * len(q)) for t, q in others.items()},
            "unwatched_change": {t: round(after_unwatched[t] - before_unwatched[t], 4) for t in others},
            "loss_ratio": kept["loss_ratio"], "collateral": kept.get("collateral"),
            "per_epoch": [{k: m.get(k) for k in ("forget_accuracy", "loss_ratio", "collateral")}
                          for m in result.metrics],
            "seconds_per_fact": seconds / len(items),
            "command": "python bench/heldout_sweep.py " + shlex.join(sys.argv[1:]),
        }
        for stage, row in rows.items():
            row.pop("_relearn", None)
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def table(path: str) -> str:
    """The records of a JSONL file as one Markdown table (docs/sweep.md)."""
    from cir.report import markdown_table

    rows = []
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        worst, cloze = r["V_worst"], r["V_cloze"]
        stages = ["before", "after unlearning", "after relearning on T", "after 4-bit quantisation"]
        lost = ", ".join(f"{t} -{n}" for t, n in r["other_questions_lost"].items() if n > 0) or "none"
        rows.append([r["topic"], f"`{r['overrides']}`", r["kept_epoch"],
                     " / ".join(f"{cloze[s]:.2f}" for s in stages if s in cloze),
                     " / ".join(f"{worst[s]:.2f}" for s in stages if s in worst),
                     lost, f"{min(r['unwatched_change'].values()):+.3f}", f"x{r['loss_ratio']:.4f}",
                     " ".join(f"{e['forget_accuracy']:.2f}" for e in r["per_epoch"]),
                     f"{r['seconds_per_fact']:.1f}"])
    header = ["topic", "overrides", "kept epoch", "V cloze (before / unlearned / relearned / 4-bit)",
              "V worst probe (same)", "other topics: questions lost", "unwatched half: worst change",
              "text loss", "topic per epoch", "s/fact"]
    return markdown_table(header, rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        print(table(sys.argv[2]))
    else:
        main()
