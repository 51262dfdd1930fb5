"""compare methods at every disruption budget, each tuned to forget what survives relearning"""

from __future__ import annotations

from cir.cli.options import add_model_options, add_options, load
from cir.unlearning.overrides import parse_overrides
from cir.errors import InputError

FLAGS = {"options": "--set", "methods": "--methods", "budgets": "--budgets", "collateral": "--collateral",
         "trials": "--trials", "seeds": "--seeds", "grid": "--attacks"}
JOURNAL = "journal.jsonl"


def add_arguments(parser) -> None:
    add_model_options(parser)
    from cir.benchmarks import benchmark_names

    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--forget", action="append", help="fact set(s) to forget (as for --mcq)")
    what.add_argument("--benchmark", choices=benchmark_names(),
                      help="a named benchmark's forget set and kept knowledge (capitals, subjects, taught: "
                           "see docs/results/); taught also reports the residual over the never-taught model")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods (default: cir,repselect,npo,simnpo,rmu,circuit_breakers,"
                             "gradient_difference; with --quick: cir,npo,gradient_difference)")
    parser.add_argument("--budgets", default=None,
                        help="comma-separated, rising: how much the held-out general-text loss may rise "
                             "(default 0.001,0.003,0.01,0.03, i.e. 0.1%% to 3%%)")
    parser.add_argument("--collateral", default=None,
                        help="the collateral budget beside each budget, or one for all: the largest accuracy drop "
                             "the watched quarter of the other topics may have (default: one question of the "
                             "smallest quarter at the first, 0.1 for 11 questions, then 0.15,0.2,0.25)")
    parser.add_argument("--trials", type=int, default=None, help="optuna trials per method (default 4: three on a grid over the step, then the "
                                                                "sampler's)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="runs of each budget's best setting, each on a new T/V split (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="3 methods, the first 12 questions and 12 of each other topic, 1 trial and seed, 1 epoch of "
                             "unlearning and of relearning (a first look: about 6 min on 2 CPU cores)")
    parser.add_argument("--attacks", default=None, metavar="GRID",
                        help="an attack grid (cir.attacks.GRIDS: suite, default, wide, full) that each budget's runs on "
                             "the judging seeds also meet; the tables add V after its worst attack (default: none)")
    parser.add_argument("--retain", help="general text for the retain step and the budget (default: sampled from the "
                                         "model)")
    parser.add_argument("--retain-mcq", action="append", default=[], metavar="FILE",
                        help="fact set(s) to keep: the collateral budget watches every fourth question from the "
                             "first, the methods are given every fourth from the third to keep, the tables report "
                             "the odd ones (default: the built-in topics not being forgotten)")
    add_options(parser, "set", "seed", "out", "overwrite", "quiet", seed={"default": 0, "help": "seed of the search"},
                set={"help": "an option fixed for every method's runs (loop options such as max_length)"},
                out={"help": f"output directory; one that holds a {JOURNAL} continues that comparison"},
                overwrite={"help": "start over in a non-empty output directory (its journal is discarded)"})


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got '{text}'") from None


def settings_of(args):
    """CompareSettings from the flags; its messages, which name a setting first, name the flag."""
    from cir.comparison import CompareSettings

    changes = {k: v for k, v in {"trials": args.trials, "seeds": args.seeds}.items() if v is not None}
    if args.methods:
        changes["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.budgets:
        changes["budgets"] = _floats(args.budgets, "--budgets")
    if args.collateral:
        changes["collateral"] = _floats(args.collateral, "--collateral")
    if args.attacks:
        changes["grid"] = args.attacks
    from cir.comparison import benchmark_options

    options = benchmark_options(args.benchmark) | dict(parse_overrides(args.overrides))
    try:
        return (CompareSettings.quick if args.quick else CompareSettings)(seed=args.seed, options=options, **changes)
    except (ValueError, InputError) as error:
        name, _, rest = str(error).partition(" ")
        flag = FLAGS.get(name.rstrip(":"))
        raise InputError(f"{flag}{name[len(name.rstrip(':')):]} {rest}" if flag else str(error)) from None


def output_dir(out: str, overwrite: bool):
    """The output directory: new or empty, one holding a journal (continued), or with `overwrite`
    any directory (its journal discarded); else refused before anything is loaded."""
    from pathlib import Path

    from cir.outputs import check_writable, claim_output

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("exists and is not a directory", path=str(out))
    if out.is_dir() and any(out.iterdir()) and not (out / JOURNAL).is_file() and not overwrite:
        raise InputError(f"output directory is not empty and holds no {JOURNAL} (use --overwrite to replace it)",
                         path=str(out))
    if (out / JOURNAL).is_file() and not overwrite:
        from cir.comparison import read_journal

        read_journal(out / JOURNAL)  # a corrupt one is refused now, not after the model has loaded
    check_writable(out)
    claim_output(out)  # a second comparison given the same --out is refused from now
    return out


def run(args) -> None:
    import shlex

    from cir import distributed
    from cir.api import compare
    from cir.comparison import markdown, write
    from cir.data import load_facts, load_mcq
    from cir.data.general import general_text_split

    if distributed.launched():
        raise InputError("cir compare runs in one process (launch unlearn, teach or attack relearn with torchrun)")
    settings = settings_of(args)
    items = settings.forget_questions(load_facts(args.forget)) if args.forget else None
    topics = {spec: load_mcq(spec) for spec in args.retain_mcq} or None
    out = output_dir(args.out, args.overwrite)
    model, tokenizer = load(args)
    retain, heldout = general_text_split(model, tokenizer, args.retain)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL
    if args.overwrite and journal.exists():
        journal.unlink()
    elif journal.exists() and not args.quiet:
        print(f"continuing the comparison in {journal}")
    result = compare(model, tokenizer, items, benchmark=args.benchmark, settings=settings, topics=topics,
                     retain=retain, heldout=heldout, progress=not args.quiet, journal=journal)
    write(result, out, "cir " + shlex.join(args.argv))
    print(markdown(result))
    print(f"written to {args.out} (compare.md, compare.json, frontier.png; {JOURNAL} holds every run)")
