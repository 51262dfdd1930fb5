"""The `cir` command line. Every subcommand is a thin layer over library functions."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cir.errors import InputError
from cir.models import DEFAULT_MODEL

COMMANDS = {}


def command(name: str, help: str):
    def register(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return register


def _model_arg(parser, required=False):
    parser.add_argument("--model", default=None if required else DEFAULT_MODEL, required=required,
                        help=f"alias ({DEFAULT_MODEL}), model directory (also one written by cir), or hub id")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weights and compute (bfloat16/float16 halve the memory; CIR's statistics stay float32)")


def _load(args):
    """The model on this process's device (under a launcher the main process loads first: it
    may convert the bundled model into the cache the others then read)."""
    import torch
    from transformers.utils import logging as hf_logging

    from cir import distributed
    from cir.models import load_model

    hf_logging.disable_progress_bar()  # our own bars say what is happening
    with distributed.main_first():
        return load_model(args.model, trust_remote_code=args.trust_remote_code,
                          dtype=getattr(torch, args.dtype), device=distributed.device())


def _fsdp_arg(parser):
    parser.add_argument("--fsdp", action="store_true",
                        help="under a launcher, shard the weights across the processes with FSDP2 "
                             "(also on with `accelerate launch --use_fsdp`)")


def _fsdp(args) -> bool:
    """Whether FSDP is asked for (refused without a launcher: checked before anything loads)."""
    from cir import distributed

    return distributed.fsdp_requested(getattr(args, "fsdp", False))


def _shard(args, model):
    """Shard `model` across the processes when FSDP is asked for (after everything that runs
    the model on the main process alone, such as sampling the general text)."""
    from cir import distributed

    if _fsdp(args):
        distributed.shard_model(model)
    return model


# ---------------------------------------------------------------- eval
def _max_choices(fmt: str) -> int | None:
    """The most choices a question may have in prompt format `fmt` (letters: A to Z)."""
    return 26 if fmt == "letters" else None


def _eval_args(p):
    _model_arg(p)
    p.add_argument("--mcq", action="append", default=[], help="fact set: JSONL file, builtin:TOPIC, TOPIC, or hf:NAME[:CONFIG][:SPLIT]")
    p.add_argument("--text", action="append", default=[], help="text corpus: .txt (one document per line), JSONL with 'text', or hf:...")
    p.add_argument("--base", help="reference model for KL(base || model) on --text")
    p.add_argument("--format", choices=["cloze", "letters", "answer_only"], default="cloze", dest="fmt",
                   help="answer_only: the question left out (what guessing by answer likelihood scores)")
    p.add_argument("--probes", action="store_true",
                   help="also every held-out probe (cloze, rewordings, qa, statement, k-shot) and the worst")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("eval", "accuracy on fact sets; loss and KL on text")
def cmd_eval(args):
    from cir.data import load_mcq, load_texts
    from cir.evaluation import evaluate_mcq, text_kl, text_loss
    from cir.report import format_table

    if not args.mcq and not args.text:
        raise InputError("nothing to evaluate: give --mcq and/or --text")
    # validate every input before loading the model
    fact_sets = {spec: load_mcq(spec, _max_choices(args.fmt)) for spec in args.mcq}
    corpora = {spec: load_texts(spec) for spec in args.text}
    model, tokenizer = _load(args)
    base = None
    if args.base:
        from cir.models import load_model

        base, _ = load_model(args.base, trust_remote_code=args.trust_remote_code)
    result = {"model": args.model, "format": args.fmt, "mcq": {}, "text": {}}
    for spec, items in fact_sets.items():
        start = time.perf_counter()
        res = evaluate_mcq(model, tokenizer, items, args.fmt)
        result["mcq"][spec] = res.to_json() | {"seconds": round(time.perf_counter() - start, 2)}
        if args.probes:
            from cir.attacks.probes import evaluate_battery

            result["mcq"][spec]["probes"] = evaluate_battery(model, tokenizer, items).to_json()
    for spec, texts in corpora.items():
        entry = {"loss": text_loss(model, tokenizer, texts), "n": len(texts)}
        if base is not None:
            entry["base_loss"] = text_loss(base, tokenizer, texts)
            entry["kl"] = text_kl(base, model, tokenizer, texts)
        result["text"][spec] = entry
    if args.json:
        print(json.dumps(result))
        return
    rows = [[spec, f"{r['accuracy']:.3f}", r["n"], f"{r['correct_prob']:.3f}"] for spec, r in result["mcq"].items()]
    if rows:
        print(format_table(["fact set", "accuracy", "n", "P(correct)"], rows))
    for spec, r in result["mcq"].items():
        if "probes" in r:
            battery = r["probes"]
            print(format_table(["probe", f"accuracy ({spec})", "n"],
                               [[name, f"{acc:.3f}", battery["n"][name]] for name, acc in battery["probes"].items()]))
            print(f"worst probe: {battery['worst']} ({battery['worst_accuracy']:.3f})")
    rows = [[spec, f"{r['loss']:.4f}", f"{r.get('kl', float('nan')):.5f}"] for spec, r in result["text"].items()]
    if rows:
        print(format_table(["text", "loss", "KL(base||model)"], rows))


# ---------------------------------------------------------------- data
@command("topics", "list the built-in fact sets")
def cmd_topics(args):
    from cir.data import builtin_topics, load_mcq

    for topic in builtin_topics():
        print(f"{topic:12s} {len(load_mcq(topic)):4d} questions  (builtin:{topic})")


def _synth_args(p):
    p.add_argument("--people", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


@command("synth", "generate fictitious facts (invented people x attributes) as a fact set")
def cmd_synth(args):
    from cir.data.synthetic import MAX_PEOPLE, generate_people, write_mcq
    from cir.outputs import check_output_file

    if not 1 <= args.people <= MAX_PEOPLE:
        raise InputError(f"--people must be between 1 and {MAX_PEOPLE}, got {args.people}")
    check_output_file(args.out, args.overwrite)
    items = generate_people(args.people, args.seed)
    write_mcq(items, args.out)
    print(f"wrote {len(items)} questions about {args.people} invented people to {args.out}")


def _teach_args(p):
    _model_arg(p)
    p.add_argument("--facts", action="append", required=True, help="fact set whose sentences are taught")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    _fsdp_arg(p)


@command("teach", "fine-tune a model on fact sentences (e.g. synthetic facts) and save it")
def cmd_teach(args):
    from cir.data import load_mcq
    from cir.evaluation import evaluate_mcq
    from cir.finetune import finetune
    from cir.models import save_model
    from cir.outputs import check_output_dir, staged_output

    check_output_dir(args.out, args.overwrite)
    _fsdp(args)
    items = [item for spec in args.facts for item in load_mcq(spec)]
    model, tokenizer = _load(args)
    _shard(args, model)
    before = evaluate_mcq(model, tokenizer, items).accuracy
    finetune(model, tokenizer, [s for item in items for s in item.sentences()], epochs=args.epochs, lr=args.lr,
             seed=args.seed)
    after = evaluate_mcq(model, tokenizer, items).accuracy
    from cir import distributed

    weights = distributed.full_state_dict(model)  # under FSDP: gathered onto the main process
    if not distributed.is_main():  # under a launcher every process holds the same weights
        distributed.barrier()
        return
    with staged_output(args.out, args.overwrite) as staging:
        save_model(model, tokenizer, staging, state_dict=weights)
        (staging / "teach.json").write_text(json.dumps({"facts": args.facts, "accuracy_before": before,
                                                          "accuracy_after": after, "epochs": args.epochs,
                                                          "lr": args.lr, "seed": args.seed}, indent=2))
    distributed.barrier()
    print(f"taught {len(items)} facts: accuracy {before:.3f} -> {after:.3f}; model written to {args.out}")


# ---------------------------------------------------------------- unlearn
def _unlearn_args(p):
    _model_arg(p)
    p.add_argument("--forget", action="append", required=True, help="fact set(s) to forget (as for --mcq)")
    p.add_argument("--retain", help="general text for the retain step (default: text sampled from the model)")
    p.add_argument("--retain-mcq", action="append", default=[], metavar="FILE",
                   help="fact set(s) to keep, watched by the collateral budget (default: the built-in topics "
                        "not being forgotten; questions that share an answer with a forget fact are left out)")
    p.add_argument("--method", default=None, help="registered method (cir methods lists them); default cir")
    p.add_argument("--config", help="YAML file of options")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="override one option, e.g. --set max_epochs=5 --set cir.unlearning_rate=1.0")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="run directory to write (refused if not empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _fsdp_arg(p)


def _prepare_unlearning(args):
    """Validate every input before the model is loaded."""
    from cir.data import load_mcq
    from cir.outputs import check_output_dir
    from cir.unlearn import build_configs, fsdp_limits

    run, method_config = build_configs(args.config, args.overrides, args.method, args.seed)
    if _fsdp(args):
        fsdp_limits(run, method_config)
    items = [item for spec in args.forget for item in load_mcq(spec)]
    retain_texts = None
    if args.retain:
        from cir.data import load_texts

        retain_texts = load_texts(args.retain)
    retain_sets = _retain_sets(args, items)
    check_output_dir(args.out, args.overwrite)
    return run, method_config, items, retain_texts, retain_sets


def _retain_sets(args, items) -> dict:
    """The fact sets the collateral budget watches: --retain-mcq, or the built-in topics not
    being forgotten; their even-numbered questions (the odd ones stay a check the run never saw)."""
    from cir.data import builtin_topics, load_mcq
    from cir.unlearn import watched_retain_sets

    specs = getattr(args, "retain_mcq", None) or [t for t in builtin_topics()
                                                  if t not in {f.removeprefix("builtin:") for f in args.forget}]
    return watched_retain_sets(items, {spec: load_mcq(spec) for spec in specs}, half=0)


def unlearn_into(args, model, tokenizer, run, method_config, items, retain_texts=None, retain_sets=None):
    """Unlearn into the run directory; `retain_texts` (a user corpus) replaces the sampled retain half."""
    from cir import distributed
    from cir.outputs import staged_output
    from cir.unlearn import general_text_split, run_unlearning, write_run

    with distributed.main_first():  # the main process samples (and caches) the general text
        retain, heldout = general_text_split(model, tokenizer)
    retain = retain_texts or retain
    _shard(args, model)
    if not distributed.is_main():  # under a launcher: train on this process's shards, write nothing
        result = run_unlearning(model, tokenizer, items, retain, heldout, run, method_config, progress=False,
                                retain_sets=retain_sets)
        distributed.full_state_dict(model)  # under FSDP: this process's slices, to the main one
        distributed.barrier()
        return result
    with staged_output(args.out, args.overwrite) as staging:
        result = run_unlearning(model, tokenizer, items, retain, heldout, run, method_config,
                                metrics_path=staging / "metrics.jsonl", progress=not args.quiet,
                                retain_sets=retain_sets)
        weights = distributed.full_state_dict(model)  # under FSDP: gathered from every process
        write_run(staging, model, tokenizer, result, run, weights,
                  {"model": args.model, "forget": args.forget, "retain": args.retain or "sampled from the model",
                   "retain_mcq": {name: len(watched) for name, watched in (retain_sets or {}).items()},
                   "processes": distributed.world_size()})
    distributed.barrier()
    return result


@command("unlearn", "make a model forget fact sets; writes the model, config.yaml, metrics.jsonl, report.md")
def cmd_unlearn(args):
    run, method_config, items, retain_texts, retain_sets = _prepare_unlearning(args)
    model, tokenizer = _load(args)
    result = unlearn_into(args, model, tokenizer, run, method_config, items, retain_texts, retain_sets)
    from cir import distributed

    if not distributed.is_main():
        return
    kept = result.metrics[result.kept_epoch]
    print(f"{run.method}: {result.stop_reason}")
    print(f"kept epoch {result.kept_epoch}: forget accuracy {result.metrics[0].get('forget_accuracy', float('nan')):.3f}"
          f" -> {kept.get('forget_accuracy', float('nan')):.3f}, held-out loss x{kept['loss_ratio']:.4f}; "
          f"{result.seconds / max(result.n_facts, 1):.2f} s per fact; written to {args.out}")
    if "probes" in result.extra:
        after = result.extra["probes"]["after"]
        print(f"worst held-out probe: {after['worst']} {after['worst_accuracy']:.3f}; other facts: largest drop "
              f"{kept.get('collateral', float('nan')):.3f} (budget {run.collateral_budget})")


@command("methods", "list the unlearning methods")
def cmd_methods(args):
    from cir.methods import get_method, method_names

    for name in method_names():
        print(f"{name:20s} {get_method(name).reference}")


# ---------------------------------------------------------------- demo
def _demo_args(p):
    _model_arg(p)
    p.add_argument("--topic", default="capitals", help="built-in topic to forget")
    p.add_argument("--method", default=None)
    p.add_argument("--config", help="YAML file of options")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--overwrite", action="store_true", default=True, help=argparse.SUPPRESS)
    p.add_argument("--quiet", action="store_true")


@command("demo", "unlearn one built-in topic, then attack it: before / after / after relearning / after 4-bit")
def cmd_demo(args):
    from cir import distributed
    from cir.attacks import split_forget
    from cir.attacks.record import record_attack
    from cir.data import builtin_topics
    from cir.demo import DemoSettings, attacks, demo_table, measure, topic_sets, write_demo

    if distributed.launched():
        raise InputError("cir demo runs in one process (launch unlearn, teach or attack relearn with torchrun)")
    if args.topic not in builtin_topics():
        raise InputError(f"unknown built-in topic '{args.topic}' (known: {', '.join(builtin_topics())})")
    args.forget, args.retain = [args.topic], None
    run, method_config, items, _, retain_sets = _prepare_unlearning(args)
    settings = DemoSettings(topic=args.topic, seed=run.seed)
    topics = topic_sets()
    model, tokenizer = _load(args)
    train, held_out = split_forget(items, settings.split_ratio, settings.seed)
    rows = {"before": measure(model, tokenizer, topics, held_out)}
    result = unlearn_into(args, model, tokenizer, run, method_config, items, None, retain_sets)  # T and V both
    rows["after unlearning"] = measure(model, tokenizer, topics, held_out)
    rows |= attacks(model, tokenizer, topics, train, held_out, settings)
    table = demo_table(settings, rows, result)
    print(table)
    out = Path(args.out)
    write_demo(out, settings, rows, table)
    record_attack(out, "relearn:mlp", rows["after relearning on T"].pop("_relearn"))
    print(f"run directory: {out} (report.md, demo.md); plots: cir report {out}")


# ---------------------------------------------------------------- compare
def _compare_args(p):
    _model_arg(p)
    p.add_argument("--forget", action="append", required=True, help="fact set(s) to forget (as for --mcq)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: cir,gradient_difference,npo,rmu,circuit_breakers; "
                        "with --quick: cir,gradient_difference,npo)")
    p.add_argument("--budget", type=float, default=None, help="held-out general-text loss ratio every run must keep (default 1.001)")
    p.add_argument("--trials", type=int, default=None, help="optuna trials per method (default 2)")
    p.add_argument("--seeds", type=int, default=None, help="runs of each method's best setting (default 1)")
    p.add_argument("--quick", action="store_true", help="first 16 questions, fewer trials and epochs (~10 min on 2 CPU cores)")
    p.add_argument("--retain", help="general text for the retain step and the budget (default: sampled from the model)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="an option fixed for every method's runs (loop options such as max_length)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")


@command("compare", "compare methods at one disruption budget, each tuned to forget what survives relearning")
def cmd_compare(args):
    import shlex

    from cir import distributed
    from cir.compare import CompareSettings, Comparison, Evaluation, markdown, overrides_for, write
    from cir.data import builtin_topics, load_mcq
    from cir.methods import method_names
    from cir.outputs import check_output_dir, staged_output
    from cir.unlearn import build_configs, general_text_split

    if distributed.launched():
        raise InputError("cir compare runs in one process (launch unlearn, teach or attack relearn with torchrun)")
    fixed = {"budget", "max_epochs", "disruption", "eval_forget", "seed", "method", "unlearning_rate"}
    clashing = sorted({o.split("=", 1)[0].split(".")[-1] for o in args.overrides} & fixed)
    if clashing:
        raise InputError(f"--set cannot change {', '.join(clashing)} in a comparison (use --budget, --seed; the "
                         "search sets the step)")
    changes = {k: v for k, v in {"budget": args.budget, "trials": args.trials, "seeds": args.seeds}.items()
               if v is not None}
    if args.methods:
        changes["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in changes.get("methods", ()) if m not in method_names()]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(method_names())})")
    for name in ("trials", "seeds"):
        if changes.get(name, 1) < 1:
            raise InputError(f"--{name} must be >= 1")
    if changes.get("budget", 1.0) <= 0:
        raise InputError("--budget must be > 0")
    settings = (CompareSettings.quick if args.quick else CompareSettings)(seed=args.seed, overrides=args.overrides,
                                                                         **changes)
    for method in settings.methods:  # every override must be valid for the methods it applies to
        build_configs(None, overrides_for(method, args.overrides), method)
    items = [item for spec in args.forget for item in load_mcq(spec)][: settings.max_facts]
    if len(items) < 4:
        raise InputError(f"need at least 4 forget questions to split into T and V, got {len(items)}")
    forgotten = {spec.removeprefix("builtin:") for spec in args.forget}
    topics = {t: load_mcq(t) for t in builtin_topics() if t not in forgotten}
    check_output_dir(args.out, args.overwrite)
    model, tokenizer = _load(args)
    retain, heldout = general_text_split(model, tokenizer, args.retain)
    comparison = Comparison(model, tokenizer, Evaluation(items, topics, retain, heldout), settings,
                            progress=not args.quiet)
    result = comparison.run()
    command_line = "cir " + shlex.join(args.argv)
    with staged_output(args.out, args.overwrite) as staging:
        write(result, staging, command_line)
    print(markdown(result))
    print(f"written to {args.out} (compare.md, compare.json, plots)")


# ---------------------------------------------------------------- attacks and the robustness report
def _attack_common(p):
    _model_arg(p)
    p.add_argument("--format", choices=["cloze", "qa", "declarative", "letters", "kshot"], default="cloze",
                   dest="fmt", help="probe prompt used to score the questions")
    p.add_argument("--shots", type=int, default=3, help="examples in a kshot prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--record", metavar="DIR", help="run directory whose attacks.json keeps this result (cir report)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _attack_args(p):
    sub = p.add_subparsers(dest="attack", required=True, metavar="ATTACK")
    r = sub.add_parser("relearn", help="fine-tune on facts T; accuracy on facts V every epoch")
    _attack_common(r)
    r.add_argument("--train", required=True, help="fact set T whose sentences are trained on")
    r.add_argument("--eval", required=True, dest="eval_set", help="fact set V evaluated every epoch")
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    r.add_argument("--params", choices=["mlp", "all", "lora"], default="mlp")
    r.add_argument("--lora-rank", type=int, default=8)
    _fsdp_arg(r)
    q = sub.add_parser("quantize", help="round-to-nearest weight quantisation, then accuracy on fact sets")
    _attack_common(q)
    q.add_argument("--bits", type=int, choices=[8, 4], required=True)
    q.add_argument("--group-size", type=int, default=128)
    q.add_argument("--backend", choices=["rtn", "bnb"], default="rtn", help="bnb: bitsandbytes, CUDA only")
    q.add_argument("--mcq", action="append", required=True, help="fact set to evaluate (as for cir eval)")


def _check_positive(**values):
    for name, value in values.items():
        if value <= 0:
            raise InputError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _attack_relearn(args):
    from cir.attacks.relearn import relearn
    from cir.data import load_mcq

    _check_positive(epochs=args.epochs, lr=args.lr, lora_rank=args.lora_rank, shots=args.shots)
    if _fsdp(args) and args.params == "lora":
        raise InputError("--fsdp shards whole weights: use --params mlp or all (LoRA adapters are not sharded)")
    train, eval_items = load_mcq(args.train), load_mcq(args.eval_set, _max_choices(args.fmt))
    model, tokenizer = _load(args)
    _shard(args, model)
    result = relearn(model, tokenizer, train, eval_items, args.epochs, args.lr, args.optimizer, args.params,
                     seed=args.seed, fmt=args.fmt, shots=args.shots, lora_rank=args.lora_rank)
    result |= {"model": args.model, "train": args.train, "eval": args.eval_set}
    return f"relearn:{args.params}", result, (f"relearning on {len(train)} facts: accuracy on {len(eval_items)} "
                                             f"facts {result['before']:.3f} -> max {result['max_accuracy']:.3f} "
                                             f"(per epoch: {', '.join(f'{a:.3f}' for a in result['per_epoch'])})")


def _attack_quantize(args):
    from cir.attacks.probes import probe_mcq
    from cir.attacks.quantize import quantize_model
    from cir.data import load_mcq

    _check_positive(group_size=args.group_size, shots=args.shots)
    fact_sets = {spec: load_mcq(spec, _max_choices(args.fmt)) for spec in args.mcq}
    model, tokenizer = _load(args)

    def evaluate():
        return {spec: probe_mcq(model, tokenizer, items, args.fmt, args.shots, args.seed)
                for spec, items in fact_sets.items()}

    before = evaluate()
    stats = quantize_model(model, args.bits, args.group_size, args.backend)
    after = evaluate()
    result = {"model": args.model, "format": args.fmt, "mcq": {s: r.to_json() for s, r in after.items()}, "text": {},
              "before": {s: r.accuracy for s, r in before.items()}, "quantization": stats}
    lines = [f"{spec}: accuracy {before[spec].accuracy:.3f} -> {after[spec].accuracy:.3f} after {args.bits}-bit "
             f"quantisation" for spec in fact_sets]
    return f"quantize:{args.bits}bit", result, "\n".join(lines)


@command("attack", "attacks that try to bring forgotten facts back: relearn, quantize")
def cmd_attack(args):
    from cir.attacks.record import check_record_dir, record_attack

    check_record_dir(args.record)
    key, result, summary = {"relearn": _attack_relearn, "quantize": _attack_quantize}[args.attack](args)
    from cir import distributed

    if not distributed.is_main():  # under a launcher (relearning): the main process reports
        return
    if args.record:
        record_attack(args.record, key, result)
    print(json.dumps(result) if args.json else summary)


def _mia_args(p):
    _model_arg(p)
    p.add_argument("--members", required=True, help="sentences the model may have seen: fact set or text corpus")
    p.add_argument("--nonmembers", required=True, help="held-out sentences of the same kind")
    p.add_argument("--min-k", type=float, default=0.2, help="fraction of lowest token log-probs for Min-K%%")
    p.add_argument("--record", metavar="DIR", help="run directory whose attacks.json keeps this result")
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("mia", "membership inference (LOSS, zlib, Min-K%): ROC AUC of members vs non-members")
def cmd_mia(args):
    from cir.attacks.mia import METRICS, load_sentences, mia_report
    from cir.attacks.record import check_record_dir, record_attack
    from cir.report import format_table

    check_record_dir(args.record)
    if not 0 < args.min_k <= 1:
        raise InputError(f"--min-k must be in (0, 1], got {args.min_k}")
    members, nonmembers = load_sentences(args.members), load_sentences(args.nonmembers)
    model, tokenizer = _load(args)
    result = mia_report(model, tokenizer, members, nonmembers, args.min_k)
    result |= {"model": args.model, "members_spec": args.members, "nonmembers_spec": args.nonmembers}
    if args.record:
        record_attack(args.record, "mia", result)
    if args.json:
        print(json.dumps(result))
        return
    print(format_table(["score", "AUC", "members", "non-members"],
                       [[m, f"{result['auc'][m]:.3f}", f"{result['members'][m]:.4f}", f"{result['nonmembers'][m]:.4f}"]
                        for m in METRICS]))


def _report_args(p):
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (from cir unlearn / cir demo)")
    p.add_argument("--out", help="where report.md, report.json and the plots go (default: DIR/robustness "
                                 "for one run; required for several)")


@command("report", "robustness report of run directories: unlearning curves, attacks, per-topic accuracy")
def cmd_report(args):
    from cir.report import robustness_report

    if args.out is None and len(args.dirs) > 1:
        raise InputError("several run directories: give --out for the report")
    out = Path(args.out or Path(args.dirs[0]) / "robustness")
    written = robustness_report(args.dirs, out)
    print(f"report: {out / 'report.md'} ({len(written)} plots)")


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cir", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (fn, help) in COMMANDS.items():
        p = sub.add_parser(name, help=help.replace("%", "%%"), description=help.replace("%", "%%"))
        configure = globals().get(f"_{name.replace('-', '_')}_args")
        if configure:
            configure(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.handler(args)
    except InputError as error:
        print(f"cir: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cir: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
