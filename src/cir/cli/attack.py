"""attacks that try to bring forgotten facts back: relearn, quantize, and every other registered kind"""

from __future__ import annotations

from cir.evaluation.probes import PROBE_FORMATS
from cir.cli.options import add_model_options, add_options, fsdp, load, max_choices
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
    _add_registered(sub)


SPECIAL = ("relearn", "quantize")  # kinds with subcommands of their own above; every other kind is generic


def _add_registered(sub) -> None:
    """A subcommand for every other registered attack kind: its fields as options, V to read."""
    import dataclasses

    from cir.attacks.base import ATTACKS

    for kind, cls in ATTACKS.items():
        if kind in SPECIAL:
            continue
        doc = (cls.__doc__ or kind).strip().splitlines()[0]
        parser = sub.add_parser(kind, help=doc, description=doc)
        add_model_options(parser)
        parser.add_argument("--eval", required=True, dest="eval_set", help="fact set V, read before and after")
        parser.add_argument("--train", default=None, help="fact set T that a training attack may train on")
        parser.add_argument("--text", default=None, help="general text that a training attack may train on")
        for field in dataclasses.fields(cls):
            if field.name == "seed":  # the common --seed sets it
                continue
            default = (field.default if field.default is not dataclasses.MISSING
                       else field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
            parser.add_argument(f"--{field.name.replace('_', '-')}", dest=f"option_{field.name}", default=default,
                                required=default is None, help=f"the attack's {field.name}"
                                + ("" if default is None else f" (default: {default})"))
        add_options(parser, "seed", "json", seed={"default": 0})


def _add_common(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--format", choices=PROBE_FORMATS, default="cloze", dest="fmt",
                        help="probe prompt used to score the questions")
    parser.add_argument("--shots", type=int, default=3, help="examples in a kshot prompt")
    add_options(parser, "seed", "record", "json", seed={"default": 0})


def run(args) -> None:
    from cir import distributed
    from cir.attacks.record import check_record_dir, record_attack

    check_record_dir(getattr(args, "record", None))
    key, result, summary = {"relearn": relearn, "quantize": quantize}.get(args.attack, registered)(args)
    if not distributed.is_main():  # under a launcher (relearning): the main process reports
        return
    if getattr(args, "record", None):
        record_attack(args.record, key, result)
    print(to_json(result) if args.json else summary)


def _check_positive(**values) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def relearn(args) -> tuple[str, dict, str]:
    from cir import attacks, distributed
    from cir.data import load_mcq
    from cir.errors import DivergedError
    from cir.evaluation.splits import check_apart
    from cir.training.finetune import check_schedule

    check_schedule(args.epochs, args.lr, ("--epochs", "--lr"))
    _check_positive(lora_rank=args.lora_rank, shots=args.shots)
    sharded = fsdp(args)
    if sharded and args.params == "lora":
        raise InputError("--fsdp shards whole weights: use --params mlp or all (LoRA adapters are not sharded)")
    train, eval_items = load_mcq(args.train), load_mcq(args.eval_set, max_choices(args.fmt))
    check_apart(train, eval_items, ("--train", "--eval"))
    model, tokenizer = load(args)
    if sharded:
        distributed.shard_model(model)
    try:
        result = attacks.relearn(model, tokenizer, train, eval_items, args.epochs, args.lr, args.optimizer,
                                 args.params, seed=args.seed, fmt=args.fmt, shots=args.shots, lora_rank=args.lora_rank)
    except DivergedError as error:  # what V reads after it says nothing of what came back
        raise DivergedError(f"the relearning broke the model: {error.reason} (--lr {args.lr:g} is too large for it); "
                            "its accuracy on --eval would say nothing of what came back", reason=error.reason) from None
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


def registered(args) -> tuple[str, dict, str]:
    """Any registered attack kind: V (and its worst probe) before, and after the attack on a copy."""
    import typing

    from cir.attacks.base import ATTACKS, make_attack
    from cir.attacks.grids import run_attack
    from cir.data import load_mcq, load_texts
    from cir.evaluation.protocol import measure
    from cir.evaluation.splits import check_apart
    from cir.fields import typed_value

    cls = ATTACKS[args.attack]
    hints = typing.get_type_hints(cls)
    options = {}
    for name, value in vars(args).items():
        if name.startswith("option_"):
            field = name.removeprefix("option_")
            try:
                options[field] = typed_value(value if not isinstance(value, str) or hints[field] is str
                                             else _number_or_text(value), hints[field])
            except ValueError as error:
                raise InputError(f"--{field.replace('_', '-')} {error}, got {value!r}") from None
    if "seed" in hints:
        options["seed"] = args.seed
    attack = make_attack(args.attack, **options)
    held_out = load_mcq(args.eval_set)
    texts = {"T": load_mcq(args.train) if args.train else [], "general": load_texts(args.text) if args.text else []}
    check_apart(texts["T"], held_out, ("--train", "--eval"))
    model, tokenizer = load(args)
    before = measure(model, tokenizer, {}, held_out)
    after = run_attack(model, tokenizer, attack, texts, held_out, {}, seed=args.seed)
    result = {"model": args.model, "attack": attack.to_json(), "before": before.to_json(per_question=False),
              "after": after.to_json(per_question=False)}
    summary = (f"{attack.label}: V {before.V.accuracy:.3f} -> {after.V.accuracy:.3f}, worst probe "
               f"{before.V_worst.accuracy:.3f} -> {after.V_worst.accuracy:.3f} ({len(held_out)} questions)")
    if after.broken:  # its reading says nothing of what came back: refused as relearn refuses it
        raise InputError(f"{attack.label}: {after.broken}; V after it ({after.V.accuracy:.3f}) says nothing of what "
                         "came back")
    return attack.key, result, summary


def _number_or_text(value: str):
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
