"""compare methods at one disruption budget, each tuned to forget what survives relearning"""

from __future__ import annotations

from cir.commands.options import add_model_options, add_options, load, parse_overrides
from cir.errors import InputError

FLAGS = {"options": "--set", "methods": "--methods", "budget": "--budget", "trials": "--trials", "seeds": "--seeds"}


def add_arguments(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--forget", action="append", required=True, help="fact set(s) to forget (as for --mcq)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: cir,gradient_difference,npo,rmu,circuit_breakers; "
                             "with --quick: cir,gradient_difference,npo)")
    parser.add_argument("--budget", type=float, default=None,
                        help="held-out general-text loss ratio every run must keep (default 1.001)")
    parser.add_argument("--trials", type=int, default=None, help="optuna trials per method (default 2)")
    parser.add_argument("--seeds", type=int, default=None, help="runs of each method's best setting (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="first 16 questions, fewer trials and epochs (~10 min on 2 CPU cores)")
    parser.add_argument("--retain", help="general text for the retain step and the budget (default: sampled from the "
                                         "model)")
    add_options(parser, "set", "seed", "out", "overwrite", "quiet", seed={"default": 0, "help": "seed of the search"},
                set={"help": "an option fixed for every method's runs (loop options such as max_length)"})


def settings_of(args):
    """CompareSettings from the flags; its messages, which name a setting first, name the flag."""
    from cir.comparison import CompareSettings

    changes = {k: v for k, v in {"budget": args.budget, "trials": args.trials, "seeds": args.seeds}.items()
               if v is not None}
    if args.methods:
        changes["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    try:
        return (CompareSettings.quick if args.quick else CompareSettings)(
            seed=args.seed, options=dict(parse_overrides(args.overrides)), **changes)
    except (ValueError, InputError) as error:
        name, _, rest = str(error).partition(" ")
        flag = FLAGS.get(name.rstrip(":"))
        raise InputError(f"{flag}{name[len(name.rstrip(':')):]} {rest}" if flag else str(error)) from None


def run(args) -> None:
    import shlex

    from cir import distributed
    from cir.api import compare
    from cir.comparison import markdown, write
    from cir.data import load_facts
    from cir.outputs import check_output_dir, staged_output
    from cir.loop import general_text_split

    if distributed.launched():
        raise InputError("cir compare runs in one process (launch unlearn, teach or attack relearn with torchrun)")
    settings = settings_of(args)
    items = settings.forget_questions(load_facts(args.forget))
    check_output_dir(args.out, args.overwrite)
    model, tokenizer = load(args)
    retain, heldout = general_text_split(model, tokenizer, args.retain)
    result = compare(model, tokenizer, items, settings=settings, retain=retain, heldout=heldout,
                     progress=not args.quiet)
    with staged_output(args.out, args.overwrite) as staging:
        write(result, staging, "cir " + shlex.join(args.argv))
    print(markdown(result))
    print(f"written to {args.out} (compare.md, compare.json, plots)")
