"""robustness report of run directories: unlearning curves, attacks, per-topic accuracy"""

from __future__ import annotations

from pathlib import Path

from cir.errors import InputError


def add_arguments(parser) -> None:
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (from cir unlearn / cir demo)")
    parser.add_argument("--out", help="where report.md, report.json and the plots go (default: DIR/robustness "
                                      "for one run; required for several)")


def run(args) -> None:
    from cir.report import robustness_report

    if args.out is None and len(args.dirs) > 1:
        raise InputError("several run directories: give --out for the report")
    out = Path(args.out or Path(args.dirs[0]) / "robustness")
    written = robustness_report(args.dirs, out)
    print(f"report: {out / 'report.md'} ({len(written)} plots)")
