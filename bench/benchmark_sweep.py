"""Sweep a method's settings on a named benchmark, judged as the demo judges: V in the worst
held-out probe after the relearning attack and after 4-bit quantisation, next to the kept
knowledge's accuracy, the watched collateral and the held-out text loss.

    python bench/benchmark_sweep.py --benchmark taught --seed 0 \
        --try "unlearning_rate=0.5" --try "update_tokens=subject unlearning_rate=1.0"

Each --try is a set of `key=value` overrides (as `cir unlearn --set`), run from the original
weights with the demo's budgets (text loss +0.1%, collateral one watched question) and its
attacks. The kept sets are split as `cir compare` splits them: the collateral budget watches a
quarter, the method is given another quarter to keep (CIR's retain-aware collapse), and the
table reports the change of the other half (records made before this split, where the method
was given the watched half itself, say `halves` in the table's split column). The worst probe
reads each probe both ways, the least likely choice taken as the answer too (`both readings`;
earlier records read the most likely choice only). `--seed` draws the T/V split: choose settings on one seed and judge them on others.
The benchmark, its measurements of the original and (taught) of the never-taught model under
the same attacks are made once. Each result is appended as a JSON line to --records.
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
    parser.add_argument("--benchmark", default="taught")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--seed", type=int, default=0, help="draws the T/V split and seeds the runs")
    parser.add_argument("--try", dest="tries", action="append", default=[])
    parser.add_argument("--records", default="docs/sweep-benchmarks.jsonl")
    parser.add_argument("--table", metavar="MARKDOWN",
                        help="(re)write this benchmark's section of MARKDOWN from every record, then stop")
    args = parser.parse_args()
    if args.table:
        return write_table(args.benchmark, Path(args.records), Path(args.table))
    if not args.tries:
        parser.error("give at least one --try (or --table)")

    from cir.attacks.grids import AttackConfig, suite
    from cir.evaluation.protocol import accuracies, residual, worst_probe
    from cir.benchmarks import make_setting
    from cir.unlearning.overrides import build_configs
    from cir.data.general import fingerprint
    from cir.evaluation.scoring import evaluate_mcq
    from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED
    from cir.unlearning.loop import run_unlearning
    from cir.data.general import general_text_split
    from cir.evaluation.protocol import watched_retain_sets
    from cir.models import load_model

    base, tokenizer = load_model(args.model)
    setting = make_setting(args.benchmark, base, tokenizer)
    model = setting.model
    weights = fingerprint(model)  # tells apart two teachings of one recipe (rounding differs between versions)
    attack = AttackConfig(seed=args.seed)
    train, held_out = attack.split(setting.forget)
    watched, protected, reported = (watched_retain_sets(setting.forget, setting.topics, part)
                                    for part in (WATCHED, PROTECTED, REPORTED))
    # a taught model's budget is read on the general text of the model before teaching (cir.benchmarks.Setting)
    retain, heldout = setting.general or general_text_split(model, tokenizer)
    before = {"V": evaluate_mcq(model, tokenizer, held_out).accuracy,
              "V worst": worst_probe(model, tokenizer, held_out),
              "reported": accuracies(model, tokenizer, reported)}
    never = None
    if setting.reference is not None:
        rows = suite(setting.reference, tokenizer, train, held_out, config=attack)
        never = {name: {"V": row.V.accuracy, "V worst": row.V_worst.accuracy} for name, row in rows.items()}
        print(json.dumps({"never_taught": never}), flush=True)
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for overrides in args.tries:
        model.load_state_dict(original)
        # one question of the smallest watched part (11 of the 44 currencies questions), under the --try
        run, method_config = build_configs(overrides=shlex.split(overrides) + [f"seed={args.seed}"],
                                           base={"collateral_budget": COLLATERAL})
        start = time.perf_counter()
        result = run_unlearning(model, tokenizer, setting.forget, retain, heldout, run, method_config,
                                progress=False, retain_sets=watched, protect_sets=protected)
        seconds = time.perf_counter() - start
        after = {"V": evaluate_mcq(model, tokenizer, held_out).accuracy,
                 "V worst": worst_probe(model, tokenizer, held_out),
                 "reported": accuracies(model, tokenizer, reported)}
        attacked = {name: {"V": row.V.accuracy, "V worst": row.V_worst.accuracy}
                    for name, row in suite(model, tokenizer, train, held_out, config=attack).items()}
        kept = result.kept
        record = {
            "benchmark": args.benchmark, "seed": args.seed, "overrides": overrides,
            "kept_epoch": result.kept_epoch, "stop": result.stop_reason, "loss_ratio": kept["loss_ratio"],
            "collateral": kept.get("collateral", 0.0), "before": before, "after": after, "attacked": attacked,
            "reported_worst_change": min(after["reported"][t] - before["reported"][t] for t in reported),
            "residual": None if never is None else {name: residual(attacked[name], never[name]) for name in attacked},
            "epochs": [{k: m.get(k) for k in ("loss_ratio", "collateral", "forget_accuracy", "forget_recall")}
                       for m in result.metrics],
            "seconds": seconds, "n_facts": len(setting.forget),
            "command": "python bench/benchmark_sweep.py " + shlex.join(
                ["--benchmark", args.benchmark, "--seed", str(args.seed), "--try", overrides]),
            "threads": torch.get_num_threads(), "model": Path(str(model.config.name_or_path)).name,
            "weights": weights, "split": "parts", "readings": "both",
        }
        with open(args.records, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps({k: record[k] for k in ("overrides", "kept_epoch", "stop", "loss_ratio", "collateral",
                                                 "after", "attacked", "residual", "reported_worst_change")}),
              flush=True)


COLLATERAL = 0.1


def _pair(entry: dict | None) -> str:
    return "-" if entry is None else f"{entry['V']:.3f} / {entry['V worst']:.3f}"


def _model(record: dict) -> str:
    """The model a record was measured on: a taught model by its recipe's key (the records of the
    first taught recipe were made before the model was recorded), then the first characters of its
    weights' fingerprint where recorded (two teachings of one recipe differ in rounding)."""
    if "model" not in record:
        return "first recipe" if record["benchmark"] == "taught" else "-"
    name = record["model"].rsplit("-", 1)[-1] if record["benchmark"] == "taught" else record["model"]
    return f"{name} ({record['weights'][:6]})" if "weights" in record else name


def write_table(benchmark: str, records: Path, markdown: Path) -> None:
    """Every record of `benchmark` as one table, in the section `sweep-<benchmark>` of `markdown`."""
    from _common import replace_section
    from cir.tables import markdown_table

    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["benchmark"] == benchmark]
    header = ["model", "split", "seed", "setting", "kept epoch (stop)", "loss ratio", "collateral (watched)",
              "unwatched kept sets, worst Δ", "V / V worst: after unlearning", "after relearning",
              "after 4-bit", "residual after relearning", "residual after 4-bit", "s"]
    body = [[_model(r), r.get("split", "halves") + (", both readings" if r.get("readings") == "both" else ""), r["seed"], f"`{r['overrides']}`", f"{r['kept_epoch']} ({r['stop'].split(':')[0]})",
             f"{r['loss_ratio']:.4f}", f"{r['collateral']:.3f}", f"{r['reported_worst_change']:+.3f}",
             _pair(r["after"]), _pair(r["attacked"]["relearn"]), _pair(r["attacked"]["quantize"]),
             _pair((r["residual"] or {}).get("relearn")), _pair((r["residual"] or {}).get("quantize")),
             f"{r['seconds']:.0f}"] for r in rows]
    block = f"<!-- sweep-{benchmark}:start -->\n{markdown_table(header, body)}\n<!-- sweep-{benchmark}:end -->"
    replace_section(markdown, f"sweep-{benchmark}", block)
    print(block)

if __name__ == "__main__":
    sys.exit(main())
