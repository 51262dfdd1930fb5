"""accuracy on fact sets; loss and KL on text"""

from __future__ import annotations

from cir.cli.options import add_model_options, add_options, load, max_choices
from cir.errors import InputError
from cir.outputs import to_json


def add_arguments(parser) -> None:
    add_model_options(parser)
    parser.add_argument("--mcq", action="append", default=[],
                        help="fact set: JSONL file, builtin:TOPIC, TOPIC, or hf:NAME[:CONFIG][:SPLIT]")
    parser.add_argument("--text", action="append", default=[],
                        help="text corpus: .txt (one document per line), JSONL with 'text', or hf:...")
    parser.add_argument("--base", help="reference model (e.g. the model before unlearning): each --mcq set's "
                                       "accuracy on it beside the model's, and KL(base || model) on --text")
    parser.add_argument("--format", choices=["cloze", "letters", "answer_only"], default="cloze", dest="fmt",
                        help="answer_only: the question left out (what guessing by answer likelihood scores)")
    parser.add_argument("--probes", action="store_true",
                        help="also every held-out probe (cloze, rewordings, qa, statement, k-shot, recall) and the worst")
    add_options(parser, "json")


def run(args) -> None:
    from cir.api import evaluate
    from cir.data import load_mcq, load_texts
    from cir.models import load_model

    if not args.mcq and not args.text:
        raise InputError("nothing to evaluate: give --mcq and/or --text")
    # every input is read before the model loads
    fact_sets = {spec: load_mcq(spec, max_choices(args.fmt)) for spec in args.mcq}
    corpora = {spec: load_texts(spec) for spec in args.text}
    model, tokenizer = load(args)
    base = None
    if args.base:  # on the model's device and in its dtype: text_kl runs both on the same token ids
        parameter = next(model.parameters())
        base = load_model(args.base, trust_remote_code=args.trust_remote_code, dtype=parameter.dtype,
                          device=parameter.device)[0]
    result = {"model": args.model} | evaluate(model, tokenizer, fact_sets, corpora, probes=args.probes,
                                              fmt=args.fmt, base=base)
    print(to_json(result) if args.json else tables(result))


def tables(result: dict) -> str:
    from cir.evaluation.probes import recall_note
    from cir.tables import format_table

    lines = []
    rows = [[spec, f"{r['accuracy']:.3f}", r["n"], f"{r['correct_prob']:.3f}"] for spec, r in result["mcq"].items()]
    if rows and all("base" in r for r in result["mcq"].values()):  # --base: each set before and after
        rows = [[spec, f"{r['base']['accuracy']:.3f}", f"{r['accuracy']:.3f}",
                 f"{r['accuracy'] - r['base']['accuracy']:+.3f}", f"{r['base']['lost']} of {r['n']}",
                 f"{r['base']['correct_prob']:.3f}", f"{r['correct_prob']:.3f}"] for spec, r in result["mcq"].items()]
        lines.append(format_table(["fact set", "base accuracy", "accuracy", "change", "questions lost",
                                   "base P(correct)", "P(correct)"], rows))
    elif rows:
        lines.append(format_table(["fact set", "accuracy", "n", "P(correct)"], rows))
    for spec, r in result["mcq"].items():
        if "probes" in r:
            battery = r["probes"]
            lines.append(format_table(["probe", f"accuracy ({spec})", "n"],
                                      [[name, f"{acc:.3f}", battery["n"][name]]
                                       for name, acc in battery["probes"].items()]))
            lines.append(f"worst probe: {battery['worst']} ({battery['worst_accuracy']:.3f})")
            note = recall_note(battery["n"].get("recall", r["n"]), r["n"])
            if note:
                lines.append(note)
    rows = [[spec, f"{r['loss']:.4f}", f"{r.get('kl', float('nan')):.5f}"] for spec, r in result["text"].items()]
    if rows:
        lines.append(format_table(["text", "loss", "KL(base||model)"], rows))
    return "\n".join(lines)
