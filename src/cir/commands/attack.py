"""attacks that try to bring forgotten facts back: relearn, quantize"""

from __future__ import annotations

from cir.probes import PROBE_FORMATS
from cir.commands.options import add_model_options, add_options, fsdp, load, max_choices
from cir.errors import InputError
from cir.outputs import to_json


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="attack", required=True, metavar="ATTACK")
    relearn = sub.add_parser("relearn", help="fine-tune on facts T; accuracy on facts V every epoch")
    _add_common(relearn)
    relearn.add_argument("--train", required=True, help="fact set T whose sentences are trained on")
    relearn.add_argument("--eval", required=True, dest="eval_set", help="fact set V evaluated every epoch")
    relearn.add_argument("--epochs", type=int, default=5)
    relearn.add_argument("--lr", type=float, default=1e-4)
    relearn.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    relearn.add_argument("--params", choices=["mlp", "all", "lora"], default="mlp")
    relearn.add_argument("--lora-rank", type=int, default=8)
    add_options(relearn, "fsdp")
    quantize = sub.add_parser("quantize", help="round-to-nearest weight quantisation, then accuracy on fact sets")
    _add_common(quantize)
    quantize.add_argument("--bits", type=int, choices=[8, 4], required=True)
    quantize.add_argument("--group-size", type=int, default=128)
    quantize.add_argument("--backend", choices=["rtn", "bnb"], default="rtn", help="bnb: bitsandbytes, CUDA only")
    quantize.add_argument("--mcq", action="append", required=True, help="fact set to evaluate (as for cir eval)")


def _add_common(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--format", choices=PROBE_FORMATS, default="cloze", dest="fmt",
                        help="probe prompt used to score the questions")
    parser.add_argument("--shots", type=int, default=3, help="examples in a kshot prompt")
    add_options(parser, "seed", "record", "json", seed={"default": 0})


def run(args) -> None:
    from cir import distributed
    from cir.attacks.record import check_record_dir, record_attack

    check_record_dir(args.record)
    key, result, summary = {"relearn": relearn, "quantize": quantize}[args.attack](args)
    if not distributed.is_main():  # under a launcher (relearning): the main process reports
        return
    if args.record:
        record_attack(args.record, key, result)
    print(to_json(result) if args.json else summary)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def relearn(args) -> tuple[str, dict, str]:
    from cir import attacks, distributed
    from cir.data import load_mcq
    from cir.finetune import check_schedule

    check_schedule(args.epochs, args.lr, ("--epochs", "--lr"))
    _check_positive(lora_rank=args.lora_rank, shots=args.shots)
    sharded = fsdp(args)
    if sharded and args.params == "lora":
        raise InputError("--fsdp shards whole weights: use --params mlp or all (LoRA adapters are not sharded)")
    train, eval_items = load_mcq(args.train), load_mcq(args.eval_set, max_choices(args.fmt))
    model, tokenizer = load(args)
    if sharded:
        distributed.shard_model(model)
    result = attacks.relearn(model, tokenizer, train, eval_items, args.epochs, args.lr, args.optimizer, args.params,
                             seed=args.seed, fmt=args.fmt, shots=args.shots, lora_rank=args.lora_rank)
    result |= {"model": args.model, "train": args.train, "eval": args.eval_set}
    return f"relearn:{args.params}", result, (f"relearning on {len(train)} facts: accuracy on {len(eval_items)} "
                                             f"facts {result['before']:.3f} -> max {result['max_accuracy']:.3f} "
                                             f"(per epoch: {', '.join(f'{a:.3f}' for a in result['per_epoch'])})")


def quantize(args) -> tuple[str, dict, str]:
    from cir import attacks
    from cir.attacks.quantization import check_backend
    from cir.data import load_mcq

    _check_positive(group_size=args.group_size, shots=args.shots)
    check_backend(args.backend)
    fact_sets = {spec: load_mcq(spec, max_choices(args.fmt)) for spec in args.mcq}
    model, tokenizer = load(args)
    result = {"model": args.model} | attacks.quantize(model, tokenizer, fact_sets, args.bits, args.group_size,
                                                      args.backend, fmt=args.fmt, shots=args.shots, seed=args.seed)
    lines = [f"{spec}: accuracy {result['before'][spec]:.3f} -> {result['mcq'][spec]['accuracy']:.3f} after "
             f"{args.bits}-bit quantisation" for spec in fact_sets]
    return f"quantize:{args.bits}bit", result, "\n".join(lines)
