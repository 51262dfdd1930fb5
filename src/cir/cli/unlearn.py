"""make a model forget fact sets; writes the model, config.yaml, metrics.jsonl, report.md"""

from __future__ import annotations

from cir.cli.options import add_model_options, add_options, fsdp, load, run_configs
from cir.errors import InputError


def add_arguments(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--forget", action="append", required=True, help="fact set(s) to forget (as for --mcq)")
    parser.add_argument("--retain", help="general text for the retain step (default: text sampled from the model)")
    parser.add_argument("--retain-mcq", action="append", default=[], metavar="FILE",
                        help="fact set(s) to keep, watched by the collateral budget (default: the built-in topics "
                             "not being forgotten; questions that share an answer with a forget fact are left out)")
    parser.add_argument("--protect-mcq", action="append", default=[], metavar="FILE",
                        help="fact set(s) given to the method to keep (CIR's retain-aware collapse reads them), "
                             "apart from the watched ones, so that the collateral budget sees what the method did "
                             "to facts it was not shown (default: the watched questions)")
    from cir.attacks.grids import GRIDS

    parser.add_argument("--audit", nargs="?", const="default", default=None, choices=list(GRIDS), metavar="GRID",
                        help="then audit the result against the model as it was (cir audit: the attack grid GRID, "
                             "default: default) into OUT/audit, and say whether the facts read as gone")
    add_options(parser, "method", "config", "set", "seed", "out", "overwrite", "quiet", "fsdp")


def run(args) -> None:
    from cir import distributed
    from cir.api import unlearn_to_dir
    from cir.data import load_facts, load_mcq, load_texts
    from cir.outputs import claim_output_dir, stage
    from cir.unlearning.run_config import fsdp_limits

    # every input is read before the model loads
    if args.audit and distributed.launched():
        raise InputError("--audit runs in one process: audit the run directory with cir audit afterwards")
    run, method_config = run_configs(args)
    sharded = fsdp(args)
    if sharded:
        fsdp_limits(run, method_config)
    items = load_facts(args.forget)
    retain = load_texts(args.retain) if args.retain else None
    watch = {spec: load_mcq(spec) for spec in args.retain_mcq} or None
    protect = {spec: load_mcq(spec) for spec in args.protect_mcq} or None
    claim_output_dir(args.out, args.overwrite)  # a second run given the same --out is refused from now
    stage(f"loading the model {args.model}")
    model, tokenizer = load(args)
    result = unlearn_to_dir(model, tokenizer, items, args.out, overwrite=args.overwrite, config=method_config,
                            loop=run, retain=retain, watch=watch, protect=protect, progress=not args.quiet, shard=sharded,
                            sources={"model": args.model, "forget": args.forget,
                                     "retain": args.retain or "sampled from the model"})
    if distributed.is_main():
        print(summary(result, run, args.out))
    if args.audit and distributed.is_main():
        print("\n".join(audited(args, model, tokenizer, items, watch)))


def audited(args, unlearned, tokenizer, items, watch) -> list[str]:
    """The audit of the unlearned model against the original (loaded again), in words."""
    from cir.auditing import AuditSettings, audit, verdict_lines

    original, _ = load(args)
    report = audit(original, unlearned, tokenizer, items, kept=watch or {}, settings=AuditSettings(args.audit,
                   seed=0 if args.seed is None else args.seed), out=f"{args.out}/audit", progress=not args.quiet)
    return [f"audit ({args.out}/audit/report.md):"] + verdict_lines(report["verdict"])


def summary(result, run, out) -> str:
    """What a run did, in words: why it stopped and what it kept, the forget facts before and
    after, the worst held-out probe and the watched fact set that lost most."""
    kept, first, nan = result.kept, result.metrics[0], float("nan")
    lines = [f"unlearning with {run.method} {result.stopped}",
             f"the forget facts' accuracy {first.get('forget_accuracy', nan):.3f} -> "
             f"{kept.get('forget_accuracy', nan):.3f} (recall {first.get('forget_recall', nan):.3f} -> "
             f"{kept.get('forget_recall', nan):.3f}); held-out text loss x{kept['loss_ratio']:.4f} of the original; "
             f"{result.seconds_per_fact:.2f} s per fact; written to {out}"]
    if "probes" in result.extra:
        after = result.extra["probes"]["after"]
        lines.append(f"the forget facts' worst held-out probe: {after['worst']} {after['worst_accuracy']:.3f}")
    if "collateral" in result.extra:
        collateral = result.extra["collateral"]
        name, worst = collateral["worst"], collateral["sets"][collateral["worst"]]
        lines.append(f"the facts kept: {name} lost most, {worst['before']:.3f} -> {worst['after']:.3f} "
                     f"({worst['lost']} of {worst['questions']} questions lost; the collateral budget allows a drop "
                     f"of {collateral['budget']:g}; every watched set in result.json and report.md)")
    return "\n".join(lines)
