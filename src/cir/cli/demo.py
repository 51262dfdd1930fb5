"""make a benchmark (or take one built-in topic), unlearn it, then audit the result as cir audit does: before / after / after each attack"""

from __future__ import annotations

import argparse

from cir.cli.options import add_model_options, add_options, load, run_configs
from cir.errors import InputError


def add_arguments(parser) -> None:
    from cir.benchmarks import benchmark_names

    add_model_options(parser)
    parser.add_argument("--benchmark", choices=benchmark_names(), default=None,
                        help=f"what to forget and keep: taught (invented people taught first, with a never-taught "
                             f"reference; taught-powered: 60 people x 5 attributes, the size where a residual can decide, "
                             f"about an hour on two cores), subjects (everything about some countries), capitals "
                             f"(pretrained, the hard case); see docs/results/ (default: {DEFAULT_BENCHMARK}, unless --topic is given)")
    parser.add_argument("--topic", default=None, help="one built-in topic to forget instead of a benchmark")
    from cir.attacks.grids import GRIDS

    parser.add_argument("--attacks", choices=list(GRIDS), default="default",
                        help="the attack grid: suite (relearning on T at 3e-5 and 4-bit), default (one attack per "
                             "axis at its strongest: learning rate, weights, epochs, text, 4- and 8-bit), full (the "
                             "whole grid; hours on a CPU) (default: default)")
    parser.add_argument("--draw", type=int, default=None, metavar="N",
                        help="the benchmark's own draw: taught's people (taught anew for each N, then cached), "
                             "subjects' countries; judging seeds with facts of their own (default: the "
                             "benchmark's, 0)")
    add_options(parser, "method", "config", "set", "seed", "out", "overwrite", "quiet",
                out={"required": False, "default": "runs/demo"},
                overwrite={"default": True, "help": argparse.SUPPRESS})


# the benchmark where CIR's forgetting holds against the attacks (docs/results/taught.md)
DEFAULT_BENCHMARK = "taught"

# one question of the smallest watched quarter (cir.evaluation.budgets.one_question): 0.1 where it has 11
# questions (a built-in topic's quarter: capitals, taught), 0.13 where 8 (subjects' currencies)
DEMO_COLLATERAL = None


def run(args) -> None:
    from cir import distributed
    from cir.auditing import verdict_lines
    from cir.demo import DemoSettings, run_demo
    from cir.outputs import claim_output_dir

    if distributed.launched():
        raise InputError("cir demo runs in one process (launch unlearn, teach or attack relearn with torchrun)")
    from cir.benchmarks import method_defaults

    if args.topic is not None and args.benchmark is not None:
        raise InputError("give --benchmark or --topic, not both")
    benchmark = args.benchmark or (DEFAULT_BENCHMARK if args.topic is None else None)
    run, method_config = run_configs(args, {"collateral_budget": DEMO_COLLATERAL} | method_defaults(benchmark))
    settings = DemoSettings(topic=args.topic or "capitals", benchmark=benchmark, seed=run.seed, attacks=args.attacks,
                            draw=args.draw)
    claim_output_dir(args.out, args.overwrite)  # a second run given the same --out is refused from now
    model, tokenizer = load(args)
    table, rows, _ = run_demo(model, tokenizer, args.out, settings, overwrite=args.overwrite, config=method_config,
                              loop=run, progress=not args.quiet, sources={"model": args.model})
    print(table)
    print(f"run directory: {args.out} (report.md, demo.md; the audit in {args.out}/audit); "
          f"plots: cir report {args.out}")
    print(f"audit ({args.out}/audit/report.md):")
    print("\n".join(verdict_lines(rows["_extra"]["verdict"])))
