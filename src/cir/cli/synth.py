"""generate fictitious facts (invented people x attributes) as a fact set"""

from __future__ import annotations

from cir.cli.options import add_options
from cir.errors import InputError


def add_arguments(parser) -> None:
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--question-form", choices=("held_out", "cloze"), default="held_out",
                        help="how each fact is also stated as a question: held_out (default: a wording no probe "
                             "asks) or cloze (the evaluation's own prompt, which a tiny model trained from scratch "
                             "needs to answer at all; evaluation then reads a trained prompt)")
    add_options(parser, "seed", "out", "overwrite", seed={"default": 0},
                out={"help": "JSONL file to write"}, overwrite={"help": "replace an existing --out"})


def run(args) -> None:
    from cir.data.synthetic import MAX_PEOPLE, generate_people, write_mcq
    from cir.outputs import check_output_file

    if not 1 <= args.people <= MAX_PEOPLE:
        raise InputError(f"--people must be between 1 and {MAX_PEOPLE}, got {args.people}")
    check_output_file(args.out, args.overwrite)
    items = generate_people(args.people, args.seed, question_form=args.question_form)
    write_mcq(items, args.out)
    print(f"wrote {len(items)} questions about {args.people} invented people to {args.out}")
