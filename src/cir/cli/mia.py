"""membership inference (LOSS, zlib, Min-K%): ROC AUC of members vs non-members"""

from __future__ import annotations

from cir.cli.options import add_model_options, add_options, load
from cir.errors import InputError
from cir.outputs import to_json


def add_arguments(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--members", required=True, help="sentences the model may have seen: fact set or text corpus")
    parser.add_argument("--nonmembers", required=True, help="held-out sentences of the same kind")
    parser.add_argument("--min-k", type=float, default=0.2, help="fraction of lowest token log-probs for Min-K%%")
    add_options(parser, "record", "json", record={"help": "run directory whose attacks.json keeps this result"})


def run(args) -> None:
    from cir.attacks import mia
    from cir.evaluation.membership import METRICS, load_sentences
    from cir.attacks.record import check_record_dir, record_attack
    from cir.tables import format_table

    check_record_dir(args.record)
    if not 0 < args.min_k <= 1:
        raise InputError(f"--min-k must be in (0, 1], got {args.min_k}")
    members, nonmembers = load_sentences(args.members), load_sentences(args.nonmembers)
    model, tokenizer = load(args)
    result = mia(model, tokenizer, members, nonmembers, args.min_k)
    result |= {"model": args.model, "members_spec": args.members, "nonmembers_spec": args.nonmembers}
    if args.record:
        record_attack(args.record, "mia", result)
    if args.json:
        print(to_json(result))
        return
    print(format_table(["score", "AUC", "members", "non-members"],
                       [[m, f"{result['auc'][m]:.3f}", f"{result['members'][m]:.4f}", f"{result['nonmembers'][m]:.4f}"]
                        for m in METRICS]))
    print(READING)


# how to read the table, printed under it
READING = ("reading: an AUC of 0.5 means members and non-members are indistinguishable (as for a model that never "
           "saw the members); towards 1 the members still read as seen, below 0.5 as less likely than unseen text "
           "(unlearned too far, which also tells them apart).\n"
           "a good non-member set is text of the same kind and source that the model never saw (the same templates "
           "about other invented people, facts held out from teaching): text of another kind or length moves the "
           "AUC by itself.")
