"""Every method's kept model on a benchmark, audited: each run is `cir demo --method NAME` (the
benchmark made, unlearned by `unlearn_to_dir` as `cir unlearn` does, then audited as `cir audit`
does, beside the never-taught and the retain model under the same attacks); its verdict is kept as
one JSON line, and the table of every line is docs/results/audits.md.

    python bench/audit_methods.py                          # every method on taught, seed 0: what is missing
    python bench/audit_methods.py --methods cir npo --seeds 1 2
    python bench/audit_methods.py --table-only             # rewrites the table from the records

A run already in the records (same benchmark, method, seed and grid) is not run again. The
references' rows are kept in the user cache per split, so each method after the first attacks
only its own unlearned model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "docs" / "results" / "audits.jsonl"
TABLE = ROOT / "docs" / "results" / "audits.md"


def record_of(out: Path, benchmark: str, method: str, seed: int, attacks: str, command: list[str],
              seconds: float) -> dict:
    """What a run's audit says: its verdict, the noise floor at the worst attack, PrivLeak (MUSE)
    and how the unlearning stopped."""
    report = json.loads((out / "audit" / "report.json").read_text())
    demo = json.loads((out / "demo.json").read_text())
    prob = report["intervals"]["probability"]
    return {"benchmark": benchmark, "method": method, "seed": seed, "attacks": attacks,
            "command": " ".join(["cir"] + command[3:]), "seconds": round(seconds),
            "verdict": report["verdict"], "noise_floor": prob.get("noise floor at the worst attack"),
            "privleak_muse": report.get("privleak_muse"), "stop_reason": demo["unlearning"]["stop_reason"],
            "questions": report["questions"], "machine": report["machine"]}


def run(benchmark: str, method: str, seed: int, attacks: str, out: Path) -> dict:
    command = [sys.executable, "-m", "cir.cli", "demo", "--benchmark", benchmark, "--method", method,
               "--seed", str(seed), "--attacks", attacks, "--out", str(out), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return record_of(out, benchmark, method, seed, attacks, command, time.perf_counter() - started)


def table(records: list[dict]) -> str:
    from cir.evaluation.statistics import Interval
    from cir.tables import markdown_table

    header = ["benchmark", "method", "seed", "V worst P(correct): before", "after unlearning", "after the worst attack",
              "the worst attack", "residual vs the retain model", "noise floor", "reads", "kept sets: largest drop",
              "text loss", "PrivLeak (MUSE, min-k)", "stopped"]
    body = []
    for r in records:
        v = r["verdict"]
        kept = v.get("kept sets") or {}
        leak = (r.get("privleak_muse") or {}).get("min_k")
        body.append([r["benchmark"], r["method"], str(r["seed"]), Interval.cell(v["V worst before"]),
                     Interval.cell(v["V worst after unlearning"]), Interval.cell(v["V worst after the worst attack"]),
                     v["worst attack"] or "-", Interval.cell(v.get("residual vs the reference"), sign=True),
                     Interval.cell(r.get("noise_floor"), sign=True), v["reads"],
                     f"{kept['largest drop']} {Interval.cell(kept['change'], sign=True)} ({kept['questions lost']} lost)"
                     if kept else "-", "x" + Interval.from_json(v["text loss ratio"]).format(4),
                     "-" if leak is None else Interval.from_json(leak).format(1, sign=True), r["stop_reason"]])
    return markdown_table(header, body)


def write_table(records: list[dict]) -> None:
    from cir.methods import method_names

    machines = sorted({r["machine"] for r in records})
    missing = sorted(set(method_names()) - {r["method"] for r in records})
    commands = "\n".join(f"- {r['method']}, seed {r['seed']} ({r['seconds']} s): `{r['command']}`" for r in records)
    TABLE.write_text(
        "# Every method's kept model, audited\n\n"
        "Each row is `cir demo --benchmark B --method NAME` on the bundled model: the benchmark made, the method "
        "run with its defaults (and the benchmark's own for CIR) within the run's budgets, then the kept model "
        "audited as `cir audit` audits any model (OUT/audit/report.json), the never-taught and the retain model "
        "under the same attacks. V's worst probe in P(correct) (the correct choice's probability renormalised "
        "over the choices), every number with its 95% interval (a paired bootstrap over V's questions, the "
        "maximum over probes and attacks inside each replicate); residual: the unlearned model's minus the "
        "retain model's under the worst attack, chosen again in each replicate (so wider than one attack's); "
        "noise floor: the retain model's minus the never-taught model's there. \"as never learned\" needs the residual's whole interval within +-0.10 of the retain model.\n\n"
        f"Written by `python bench/audit_methods.py --table-only` from {RECORDS.name} (one line a run). "
        f"Measured on: {'; '.join(machines)}.\n\n{table(records)}\n\n"
        + (f"Not yet audited: {', '.join(missing)} (`python bench/audit_methods.py` runs what is missing).\n\n"
           if missing else "")
        + f"Commands:\n\n{commands}\n")


def main() -> None:
    from cir.methods import method_names

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="taught")
    parser.add_argument("--methods", nargs="*", default=sorted(method_names()))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--attacks", default="default", help="the attack grid (cir demo --attacks)")
    parser.add_argument("--runs", default="runs/audits", help="where the run directories go")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the records, run nothing")
    args = parser.parse_args()

    def records() -> list[dict]:
        return [json.loads(line) for line in RECORDS.read_text().splitlines()] if RECORDS.is_file() else []

    if not args.table_only:
        for seed in args.seeds:
            for method in args.methods:
                key = (args.benchmark, method, seed, args.attacks)
                if any((r["benchmark"], r["method"], r["seed"], r["attacks"]) == key for r in records()):
                    continue
                out = ROOT / args.runs / f"{args.benchmark}-{method}-s{seed}"
                record = run(args.benchmark, method, seed, args.attacks, out)
                with RECORDS.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                write_table(records())
                print(json.dumps(record["verdict"]), flush=True)
    write_table(records())
    print(TABLE.read_text())


if __name__ == "__main__":
    main()
