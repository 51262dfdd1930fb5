"""The demo's attack grid over seeds and methods: each run is `cir demo` on `taught` (a seed draws
T and V), its headline kept as one JSON line, and the table of every line in docs/sweep-grid.md.

    python bench/grid_seeds.py --seeds 0 1 2 --method cir                # runs what is missing
    python bench/grid_seeds.py --seeds 0 --method npo --set unlearning_rate=1e-4 --tag npo-1e-4
    python bench/grid_seeds.py --table-only                              # rewrites the table

A run already in the JSONL file (same tag, seed and grid) is not run again. The references'
attacks are kept in the user cache per split (cir.attacks.grids.ReferenceRows), so a second
method or setting on a seed attacks only its own unlearned model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "docs" / "sweep-grid.jsonl"
TABLE = ROOT / "docs" / "sweep-grid.md"


def summary(demo: dict) -> dict:
    """What a run's demo.json says of the target: the worst attack and both residuals there, the
    largest residual of the grid, PrivLeak, the kept sets' worst change and the text loss."""
    rows, head = demo["rows"], demo["headline"]
    before, after = rows["before"], rows["after unlearning"]
    kept = {name: after.accuracy(name) - before.accuracy(name) for name in before.sets if name != demo["benchmark"]}
    worst_kept = min(kept, key=kept.get)
    return {"worst_attack": head["worst_attack"], "V_worst_before": before.V_worst.accuracy,
            "V_worst_after_unlearning": after.V_worst.accuracy, "V_worst_after_attack": head["V worst"],
            "residual_never_taught": head.get("never_taught"), "residual_retain": head.get("retain"),
            "privleak": demo.get("privleak"), "mia_after": (demo["mia"].get("after unlearning") or {}).get("auc"),
            "kept_worst": {"set": worst_kept, "change": kept[worst_kept],
                           "questions": round(kept[worst_kept] * demo["questions"][worst_kept])},
            "questions": demo["questions"]}


def run(seed: int, args, out: Path) -> dict:
    command = [sys.executable, "-m", "cir.cli", "demo", "--benchmark", "taught", "--seed", str(seed),
               "--attacks", args.attacks, "--out", str(out), "--quiet"]
    if args.method:
        command += ["--method", args.method]
    for option in args.set:
        command += ["--set", option]
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    from cir.demo import read_demo

    rows, demo = read_demo(out / "demo.json")
    demo["rows"] = rows
    loss = demo["unlearning"]["loss_ratio"]
    return {"tag": args.tag or args.method or "cir", "seed": seed, "attacks": args.attacks, "method": args.method or "cir",
            "options": args.set, "command": " ".join(["cir"] + command[3:]), "loss_ratio": loss} | summary(demo)


def _residual(found: dict | None, key: str) -> str:
    return "-" if not found else f"{found[key]:+.3f}"


def table(records: list[dict]) -> str:
    from cir.tables import markdown_table

    header = ["tag", "seed", "grid", "worst attack", "V worst: before / unlearned / after the worst attack",
              "residual vs retain (worst attack / largest)", "residual vs never taught (worst attack / largest)",
              "PrivLeak (min-k / zlib / loss)", "kept, worst change", "text loss"]
    body = []
    for r in records:
        leak = r.get("privleak")
        body.append([
            r["tag"], str(r["seed"]), r["attacks"], r["worst_attack"],
            f"{r['V_worst_before']:.3f} / {r['V_worst_after_unlearning']:.3f} / {r['V_worst_after_attack']:.3f}",
            f"{_residual(r['residual_retain'], 'residual at the worst attack')} / "
            f"{_residual(r['residual_retain'], 'largest residual')}",
            f"{_residual(r['residual_never_taught'], 'residual at the worst attack')} / "
            f"{_residual(r['residual_never_taught'], 'largest residual')}",
            "-" if not leak else " / ".join(f"{leak[m]:+.3f}" for m in ("min_k", "zlib", "loss")),
            f"{r['kept_worst']['questions']:+d} question ({r['kept_worst']['set']})",
            "-" if r.get("loss_ratio") is None else f"x{r['loss_ratio']:.4f}"])
    return markdown_table(header, body)


def write_table(records: list[dict]) -> None:
    commands = "\n".join(f"- `{r['tag']}`, seed {r['seed']}: `{r['command']}`" for r in records)
    TABLE.write_text("# The attack grid on `taught`, per run\n\nWritten by `python bench/grid_seeds.py --table-only` "
                     f"from {RECORDS.name} (one line a run).\n\n{table(records)}\n\nCommands:\n\n{commands}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--method", default=None, help="a method other than CIR (cir demo --method)")
    parser.add_argument("--set", action="append", default=[], help="an option, as cir demo --set takes it")
    parser.add_argument("--tag", default=None, help="names the setting in the table (default: the method)")
    parser.add_argument("--attacks", default="default", help="the attack grid (cir demo --attacks)")
    parser.add_argument("--runs", default="runs/grid", help="where the run directories go")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the records, run nothing")
    args = parser.parse_args()

    records = [json.loads(line) for line in RECORDS.read_text().splitlines()] if RECORDS.is_file() else []
    if not args.table_only:
        tag = args.tag or args.method or "cir"
        for seed in args.seeds:
            if any((r["tag"], r["seed"], r["attacks"]) == (tag, seed, args.attacks) for r in records):
                continue
            record = run(seed, args, ROOT / args.runs / f"{tag}-s{seed}")
            records.append(record)
            with RECORDS.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    # the file, not this process's list: runs of other seeds may have appended meanwhile
    write_table([json.loads(line) for line in RECORDS.read_text().splitlines()] if RECORDS.is_file() else records)
    print(TABLE.read_text())


if __name__ == "__main__":
    main()
