"""Every method re-judged at a benchmark's powered size, on judging seeds with forget sets of their
own, pooled: each run is `cir demo --draw K --seed K --method NAME --set budget=B` (the benchmark
drawn and taught anew for draw K, unlearned with the step the method's search on `taught` chose,
audited beside the never-taught and the retain model under the same attacks); its verdict is one
JSON line, and the pooled table (a stratified bootstrap over V's questions, draws as strata, the
worst probe and the worst attack chosen inside each replicate) is docs/results/tables/rejudge-B.md.

    python bench/rejudge.py                      # the next missing runs of the plan, in order
    python bench/rejudge.py --draws 1 --methods cir npo
    python bench/rejudge.py --methods cir --setting with-name --set answer_tokens=with_name
    python bench/rejudge.py --table-only         # the table again from the records and run directories

A run in the records is not run again; an interrupted run is made again, its attacks' rows read
from the user cache where its unlearning gave the same weights (as it does on one machine), as are
the references' rows and those of a method that kept the original weights. A run that stopped at
max_epochs under the smaller budget is not made again under the larger one: no epoch passed the
smaller, so none passes the larger, and the budget is read only by the stop rule. The pooled
table reads each run's demo.json (the per-question readings) from its run directory, which stays
on the machine that ran it; the records keep each run's own verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from audit_methods import record_of

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "docs" / "results" / "rejudge.jsonl"
TABLES = ROOT / "docs" / "results" / "tables"
BUDGETS = (0.001, 0.03)
# the step each method's search on `taught` chose at both budgets (docs/results/tables/compare-taught.md;
# gradient difference's and RMU's from the wider searches, docs/results/taught.md); CIR: the
# benchmark's own defaults (cir.benchmarks.taught.TAUGHT_DEFAULTS, chosen by the sweep on seed 0's split)
SEARCHED = {
    "cir": {},
    "repselect": {"unlearning_rate": 0.2418},
    "npo": {"unlearning_rate": 0.0003162},
    "simnpo": {"unlearning_rate": 0.0003162},
    "rmu": {"unlearning_rate": 0.1},
    "circuit_breakers": {"unlearning_rate": 0.0003162},
    "gradient_difference": {"unlearning_rate": 0.1},
}


# a run's setting when it is the searched one (records written before settings were named have none)
SEARCHED_SETTING = "searched"


def setting_of(record: dict) -> str:
    return record.get("setting", SEARCHED_SETTING)


def run_dir(runs: str, benchmark: str, method: str, budget: float, draw: int, attacks: str,
            setting: str = SEARCHED_SETTING) -> Path:
    label = "" if setting == SEARCHED_SETTING else f"-{setting}"
    return ROOT / runs / f"{benchmark}-{method}{label}-b{budget:g}-d{draw}-{attacks}"


def run(benchmark: str, method: str, budget: float, draw: int, attacks: str, out: Path,
        setting: str = SEARCHED_SETTING, extra: dict | None = None) -> dict:
    options = {"budget": round(1 + budget, 6)} | SEARCHED[method] | (extra or {})
    command = [sys.executable, "-m", "cir.cli", "demo", "--benchmark", benchmark, "--method", method,
               "--draw", str(draw), "--seed", str(draw), "--attacks", attacks, "--out", str(out), "--quiet"]
    command += [a for key, value in options.items() for a in ("--set", f"{key}={value}")]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    record = record_of(out, benchmark, method, draw, attacks, command, time.perf_counter() - started)
    return record | {"budget": budget, "draw": draw, "options": options, "setting": setting,
                     "out": os.path.relpath(out, ROOT)}


def same_run(records: list[dict], key: tuple, extra: dict) -> dict | None:
    """The record of this run under a smaller budget that it would repeat weight for weight: one that
    stopped at max_epochs, no epoch past its budget, so none past a larger one (the budget is read
    only by the stop rule)."""
    benchmark, method, budget, draw, attacks, setting = key
    for r in records:
        if ((r["benchmark"], r["method"], r["draw"], r["attacks"], setting_of(r)) == (benchmark, method, draw, attacks,
                                                                                       setting)
                and r["budget"] < budget and r["stop_reason"].startswith("max_epochs") and "same_as" not in r
                and {k: v for k, v in r["options"].items() if k != "budget"} == SEARCHED[method] | extra):
            return r
    return None


def pooled(records: list[dict]) -> dict:
    """One method at one budget over its draws (one run each): cir.auditing.pooled_intervals over
    V's questions, and under "by person" its residual with V's people resampled instead (a
    person's questions move together)."""
    from cir.auditing import pooled_intervals
    from cir.demo import read_demo

    runs = [read_demo(ROOT / r["out"] / "demo.json") for r in records]
    people = [people_of_V(r, extra["settings"]["split_ratio"]) for r, (_, extra) in zip(records, runs)]
    return pooled_intervals(runs) | {"by person": pooled_intervals(runs, clusters=people)["residual"]}


def people_of_V(record: dict, split_ratio: float) -> list[str]:
    """The person each of a run's V questions asks about, in the rows' order: the benchmark's draw
    split again as the audit splits it (by subject, with the run's seed and split ratio)."""
    from cir.attacks.grids import AttackConfig
    from cir.benchmarks.taught import POWERED, TeachRecipe, drawn, invented_people

    recipe = {"taught": TeachRecipe(), "taught-powered": POWERED}[record["benchmark"]]
    forget = invented_people(drawn(recipe, record["draw"]))[0]
    return [item.subject for item in AttackConfig(split_ratio=split_ratio, seed=record["seed"]).split(forget)[1]]


def table(records: list[dict], runs: str) -> str:
    from cir.auditing import verdict
    from cir.evaluation.intervals import drop_ratio
    from cir.evaluation.statistics import Interval
    from cir.tables import markdown_table

    header = ["budget", "method", "draws", "V worst P(correct): before", "after unlearning", "after the worst attack",
              "drop that survives the attacks", "residual vs the retain model",
              "the same, people resampled", "noise floor", "reads",
              "ratio of drops to the best baseline's", "per draw: text loss / kept sets' largest drop / PrivLeak (MUSE, min-k) / stopped"]
    body = []
    for budget in sorted({r["budget"] for r in records}):
        at = [r for r in records if r["budget"] == budget]
        found = {}
        for method in SEARCHED:
            for setting in dict.fromkeys(setting_of(r) for r in at if r["method"] == method):
                mine = sorted((r for r in at if r["method"] == method and setting_of(r) == setting),
                              key=lambda r: r["draw"])
                name = method if setting == SEARCHED_SETTING else f"{method} ({setting})"
                found[name] = (mine, pooled(mine))
        baselines = {m: v for m, v in found.items() if m in SEARCHED and m != "cir"}
        best = max(baselines, key=lambda m: baselines[m][1]["drop"].estimate) if baselines else None
        for method, (mine, p) in found.items():
            ratio = "-"
            draws = [r["draw"] for r in mine]
            if method.startswith("cir") and best is not None and [r["draw"] for r in found[best][0]] == draws:
                other = found[best][1]
                # a model that kept every weight drops about +0.01 after relearning (the attack's own
                # shift): a ratio is read only against a baseline that forgot something measurable
                if other["drop"].low > 0 and other["after unlearning"].high < other["before"].low:
                    ratio = drop_ratio(*p["_rows"], *other["_rows"]).format(1) + f" ({best})"
                else:
                    ratio = (f"no bound: {best}, the best baseline, forgot nothing measurable (drop "
                             f"{other['drop'].signed(3)}; after unlearning {other['after unlearning'].format(3)})")
            per_draw = []
            for r in mine:
                v = r["verdict"]
                kept = v.get("kept sets") or {}
                leak = (r.get("privleak_muse") or {}).get("min_k")
                per_draw.append(f"d{r['draw']}: x{Interval.from_json(v['text loss ratio']).estimate:.4f} / "
                                + (f"{kept['largest drop']} {Interval.from_json(kept['change']).estimate:+.3f}"
                                   if kept else "-")
                                + f" / {'-' if leak is None else format(Interval.from_json(leak).estimate, '+.1f')}"
                                + f" / {r['stop_reason'].split(';')[0]}")
            body.append([f"{budget:.1%}", method, ", ".join(map(str, draws)), p["before"].format(3),
                         p["after unlearning"].format(3), p["after the worst attack"].format(3),
                         p["drop"].signed(3), p["residual"].signed(3), p["by person"].signed(3),
                         p["noise floor"].signed(3),
                         verdict(p["residual"], p["noise floor"]), ratio, "<br>".join(per_draw)])
    return markdown_table(header, body)


def write_table(records: list[dict], benchmark: str, attacks: str, runs: str) -> Path:
    chosen = [r for r in records if r["benchmark"] == benchmark and r["attacks"] == attacks]
    path = TABLES / f"rejudge-{benchmark}-{attacks}.md"
    machines = sorted({r["machine"] for r in chosen})
    commands = "\n".join(f"- {r['method']} ({setting_of(r)}), budget {r['budget']:.1%}, draw {r['draw']} "
                         + (f"(the run at {r['same_as']}, which stopped at max_epochs within either budget): "
                            if "same_as" in r else f"({r['seconds']} s): ")
                         + f"`{r['command']}`" for r in chosen)
    path.write_text(
        f"# `{benchmark}` re-judged: every method, grid `{attacks}`, pooled over draws\n\n"
        "Each run is `cir demo --benchmark B --draw K --seed K --method NAME --set budget=...` with the step "
        "the method's search on `taught` chose (bench/rejudge.py, SEARCHED): draw K's people made and taught "
        "anew, so that the draws' forget sets share no question and pool as independent strata. In "
        "P(correct) (the correct choice's probability renormalised over the choices), V's worst probe; every "
        "interval is a stratified bootstrap over V's questions (draws as strata; the maximum over probes and "
        "attacks taken inside each replicate). Drop: before minus after the worst attack. Residual: the "
        "unlearned model's minus the retain model's at the worst attack; noise floor: the retain model's minus "
        "the never-taught model's there; beside it, the same residual with V's people resampled instead of its "
        "questions (a person's questions are forgotten or kept together, so this is the honest width where they "
        "are). Ratio of drops: CIR's over the baseline whose drop is largest, "
        "resampled together (RepSelect's robustness ratio), read only where that baseline forgot something "
        "measurable (its drop's interval excludes 0 and its V after unlearning lies below its V before): a "
        "model that kept every weight drops about +0.01 after relearning, the attack's own shift.\n\n"
        f"Written by `python bench/rejudge.py --table-only` from {RECORDS.name} and the run directories "
        f"under {runs}/. Measured on: {'; '.join(machines)}.\n\n"
        f"{table(chosen, runs) if chosen else '(no run yet)'}\n\nCommands:\n\n{commands}\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="taught-powered")
    parser.add_argument("--methods", nargs="*", default=list(SEARCHED), choices=list(SEARCHED))
    parser.add_argument("--budgets", type=float, nargs="*", default=list(BUDGETS))
    parser.add_argument("--draws", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--attacks", default="default", help="the attack grid (cir demo --attacks)")
    parser.add_argument("--runs", default="runs/rejudge", help="where the run directories go")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="an option beside the searched ones (cir demo --set); needs --setting")
    parser.add_argument("--setting", default=SEARCHED_SETTING,
                        help="the name of the runs' setting in the records and the table (with --set)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the records, run nothing")
    args = parser.parse_args()
    if bool(args.options) != (args.setting != SEARCHED_SETTING):
        parser.error("--set and --setting go together: a setting other than the searched one has a name")
    extra = dict(option.split("=", 1) for option in args.options)

    def records() -> list[dict]:
        return [json.loads(line) for line in RECORDS.read_text().splitlines()] if RECORDS.is_file() else []

    if not args.table_only:
        for draw in args.draws:
            for budget in args.budgets:
                for method in args.methods:
                    key = (args.benchmark, method, budget, draw, args.attacks, args.setting)
                    if any((r["benchmark"], r["method"], r["budget"], r["draw"], r["attacks"], setting_of(r)) == key
                           for r in records()):
                        continue
                    same = same_run(records(), key, extra)
                    if same is not None:  # stopped by max_epochs under a smaller budget: this run is that one
                        record = same | {"budget": budget, "seconds": 0, "same_as": f"budget {same['budget']:.1%}",
                                         "options": same["options"] | {"budget": round(1 + budget, 6)}}
                    else:
                        out = run_dir(args.runs, args.benchmark, method, budget, draw, args.attacks, args.setting)
                        record = run(args.benchmark, method, budget, draw, args.attacks, out, args.setting, extra)
                    with RECORDS.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    print(json.dumps({k: record[k] for k in ("method", "budget", "draw", "seconds")}
                                     | {"reads": record["verdict"]["reads"]}), flush=True)
                    write_table(records(), args.benchmark, args.attacks, args.runs)
    print(write_table(records(), args.benchmark, args.attacks, args.runs).read_text())


if __name__ == "__main__":
    main()
