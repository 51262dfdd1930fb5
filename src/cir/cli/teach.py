"""fine-tune a model on fact sentences (e.g. synthetic facts) and save it"""

from __future__ import annotations

from cir.cli.options import add_model_options, add_options, fsdp, load


def add_arguments(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--facts", action="append", required=True, help="fact set whose sentences are taught")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--params", choices=("all", "mlp"), default="all",
                        help="the weights trained: all, or the MLP projections only (the taught benchmark's choice)")
    parser.add_argument("--keep-text", metavar="CORPUS",
                        help="general text (.txt, JSONL with 'text', hf:NAME) trained beside the facts towards the "
                             "model's own next-token distributions before teaching (KL), so that it predicts that "
                             "text as before: what teaching costs the model elsewhere is kept down (the taught "
                             "benchmark's recipe; it holds a second copy of the model)")
    add_options(parser, "seed", "out", "overwrite", "fsdp", seed={"default": 0},
                out={"help": "model directory to write (refused if not empty)"})


def run(args) -> None:
    import copy

    from cir import distributed
    from cir.data import load_facts
    from cir.data.text import load_texts
    from cir.errors import DivergedError, InputError
    from cir.evaluation.scoring import evaluate_mcq
    from cir.training.finetune import check_schedule, finetune
    from cir.outputs import claim_output_dir, write_json
    from cir.runs import run_directory, save_weights

    check_schedule(args.epochs, args.lr, ("--epochs", "--lr"))
    claim_output_dir(args.out, args.overwrite)  # a second run given the same --out is refused from now
    sharded = fsdp(args)
    if sharded and args.keep_text:
        raise InputError("--keep-text needs the whole model before teaching as its teacher, which --fsdp shards: "
                         "run it without --fsdp")
    items = load_facts(args.facts)
    keep = list(load_texts(args.keep_text)) if args.keep_text else []
    model, tokenizer = load(args)
    teacher = copy.deepcopy(model).eval().requires_grad_(False) if keep else None
    if sharded:
        distributed.shard_model(model)
    before = evaluate_mcq(model, tokenizer, items).accuracy
    with run_directory(args.out, args.overwrite) as staging:  # from the start: a run that ends refused keeps it
        try:
            finetune(model, tokenizer, [s for item in items for s in item.sentences()], epochs=args.epochs,
                     lr=args.lr, params=args.params, seed=args.seed, keep=keep, teacher=teacher)
        except DivergedError as error:  # the staging folder goes with the error: nothing is written
            raise DivergedError(f"{error}; nothing is saved", reason=error.reason) from None
        del teacher
        after = evaluate_mcq(model, tokenizer, items).accuracy
        save_weights(model, tokenizer, staging)
        if staging is not None:
            write_json(staging / "teach.json", {"facts": args.facts, "accuracy_before": before,
                                                "accuracy_after": after, "epochs": args.epochs, "lr": args.lr,
                                                "params": args.params, "keep_text": args.keep_text,
                                                "kept_texts": len(keep), "seed": args.seed})
    if distributed.is_main():
        print(f"taught {len(items)} facts: accuracy {before:.3f} -> {after:.3f}; model written to {args.out}")
