"""What an unfinished comparison has measured so far, from its journal: every finished search
trial and every finished run on seeds 1..K, as tables in a section of a markdown file.

    python bench/journal_table.py runs/compare-subjects/journal.jsonl --name subjects \
        --markdown docs/results/tables/compare-progress-subjects.md

A comparison of seven methods at three seeds runs for many hours on a CPU; its journal is
continued by running the same `cir compare` command again. The tables are the trials' own
records (seed 0's split chose them; the comparison's tables will hold only the seeds' runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("--name", required=True, help="names the section: compare-progress-NAME")
    parser.add_argument("--markdown", help="write the section into this file (else print it)")
    args = parser.parse_args()

    from _common import replace_section
    from cir.comparison import read_journal, trials_table
    from cir.tables import markdown_table

    header, *records = read_journal(Path(args.journal))
    settings = header["settings"]
    methods = {m: {"trials": [r for r in records if r["kind"] == "trial" and r["method"] == m]}
               for m in settings["methods"]}
    finals = [r for r in records if r["kind"] == "final"]
    budgets = settings["budgets"]
    runs = markdown_table(
        ["method", "setting of trial", "seed", "stopped by"]
        + [f"{100 * b:g}%: kept epoch, V worst after relearning / after 4-bit" for b in budgets],
        [[r["method"], str(r["number"] + 1), str(r["seed"]), r["stop_reason"]]
         + [_final(r["budgets"].get(str(i))) for i in range(len(budgets))] for r in finals])
    done = sum(len(m["trials"]) for m in methods.values())
    body = (f"Finished so far: {done} of {settings['trials'] * len(settings['methods'])} search trials "
            f"and {len(finals)} runs on seeds 1-{settings['seeds']} "
            f"({sum(r['seconds'] for r in records if 'seconds' in r) / 3600:.1f} hours of runs).\n\n"
            "Search trials (seed 0's split):\n\n"
            + trials_table({"settings": settings, "methods": {m: e for m, e in methods.items() if e["trials"]}})
            + ("\n\nRuns on the seeds that judge (budgets their setting was chosen for):\n\n" + runs if finals else ""))
    block = f"<!-- compare-progress-{args.name}:start -->\n{body}\n<!-- compare-progress-{args.name}:end -->"
    if args.markdown:
        replace_section(Path(args.markdown), f"compare-progress-{args.name}", block)
    print(block)


def _final(cell: dict | None) -> str:
    if cell is None:
        return "-"
    from cir.comparison.summary import readings

    values = readings(cell)
    return (f"{values['kept_epoch']}, {values['V_worst_after_relearning']:.3f} / "
            f"{values.get('V_worst_after_quantisation', float('nan')):.3f}")


if __name__ == "__main__":
    sys.exit(main())
