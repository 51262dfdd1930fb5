"""The demo in float32 and in bfloat16, side by side: every cell's difference in questions.

    python bench/demo_precision.py [--benchmark taught] [--out runs/demo-precision]

On `taught` both runs start from the model taught in float32 (the one `bin/demo` caches): the
second casts it to bfloat16 before unlearning, so the two differ in the precision unlearning runs
in (and in the rounding of the taught weights), not in their teaching. (`cir demo --dtype
bfloat16` teaches the bfloat16 model itself: another taught model, another trajectory.) On
`capitals` and `subjects` the second run is `cir demo --dtype bfloat16`. In both runs the rows are
read and the attackers train in float32 (cir.attacks.suite). Writes the section
`demo-precision-BENCHMARK` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def run(benchmark: str, out: Path, bfloat16: bool) -> float:
    """`cir demo` into `out`; its seconds."""
    import cir.benchmarks.taught as benchmarks
    from cir.benchmarks import method_defaults
    from cir.demo import DemoSettings, run_demo
    from cir.models import DEFAULT_MODEL, load_model
    from cir.unlearning.overrides import build_configs

    dtype = torch.bfloat16 if bfloat16 and benchmark != "taught" else torch.float32
    taught_model = benchmarks.taught_model

    def in_bfloat16(*args, **kwargs):
        taught, record = taught_model(*args, **kwargs)
        return taught.to(torch.bfloat16), record

    if bfloat16 and benchmark == "taught":
        benchmarks.taught_model = in_bfloat16
    start = time.perf_counter()
    try:  # as `cir demo --benchmark NAME --dtype DTYPE` runs it
        model, tokenizer = load_model(DEFAULT_MODEL, dtype=dtype)
        loop, config = build_configs(base={"collateral_budget": None} | method_defaults(benchmark))
        run_demo(model, tokenizer, out, DemoSettings(benchmark=benchmark), overwrite=True, config=config, loop=loop,
                 progress=False, sources={"model": DEFAULT_MODEL})
    finally:
        benchmarks.taught_model = taught_model
    return time.perf_counter() - start


def cells(demo: dict) -> dict[str, dict[str, float]]:
    """Every row of the demo's table (the never-taught model's too), by its label."""
    rows = dict(demo["rows"])
    rows |= {f"never taught, {label}": row for label, row in (demo.get("never_taught") or {}).items()}
    return {label: {"V": row["V"]["accuracy"], "V worst": row["V_worst"]["accuracy"], "V worst n": row["V_worst"]["n"]}
            | {name: score["accuracy"] for name, score in row["sets"].items()} for label, row in rows.items()}


def right(row: dict, column: str, questions: dict[str, int]) -> int:
    """How many questions a cell answers right: V's worst probe counts on that row's worst probe's
    own questions (a probe such as a rewording may exist for fewer of them than V has)."""
    n = row["V worst n"] if column == "V worst" else questions[column]
    return round(row[column] * n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--benchmark", default="taught", choices=["taught", "capitals", "subjects"])
    parser.add_argument("--out", default="runs/demo-precision")
    args = parser.parse_args()

    from _common import write_section
    from cir.tables import markdown_table

    seconds, demos, results = {}, {}, {}
    for name in ("float32", "bfloat16"):
        out = Path(args.out) / args.benchmark / name
        seconds[name] = run(args.benchmark, out, name == "bfloat16")
        demos[name] = json.loads((out / "demo.json").read_text())
        results[name] = json.loads((out / "result.json").read_text())
    questions = demos["float32"]["questions"]
    questions["V worst"] = questions["V"]
    high, low = cells(demos["float32"]), cells(demos["bfloat16"])
    columns = list(dict.fromkeys(c for c in ("V", "V worst", *questions) if c in high["before"]))
    header = ["row"] + [f"{c} ({questions[c]})" for c in columns] + ["cells equal", "largest difference"]
    table, differences = [], []
    for label in high:
        moved = [right(low[label], c, questions) - right(high[label], c, questions) for c in columns]
        differences += moved
        table.append([label] + [f"{low[label][c]:.3f} ({d:+d})" if d else f"{low[label][c]:.3f}"
                                for c, d in zip(columns, moved)]
                     + [f"{sum(d == 0 for d in moved)} of {len(moved)}", f"{max(abs(d) for d in moved)}"])
    summary = (f"{sum(d == 0 for d in differences)} of {len(differences)} cells equal, "
               f"{sum(abs(d) <= 1 for d in differences)} within one question, the largest difference "
               f"{max(abs(d) for d in differences)} questions")
    kept = {name: results[name]["kept"] for name in results}
    body = "\n".join([
        f"## The demo in bfloat16 against float32: `{args.benchmark}`",
        "",
        "Each cell: bfloat16's accuracy, and in brackets how many more questions (of the column's count) it "
        "answers than float32's run, when they differ.",
        "",
        markdown_table(header, table),
        "",
        f"- {summary}.",
        *(f"- {name}: kept epoch {kept[name]['epoch']}, held-out text loss x{kept[name]['loss_ratio']:.4f}, "
          f"stopped by {results[name]['stop_reason']}; unlearning {results[name]['seconds']:.0f} s, the whole demo "
          f"{seconds[name] / 60:.1f} min" for name in results),
    ])
    write_section(f"demo-precision-{args.benchmark}", body)


if __name__ == "__main__":
    main()
