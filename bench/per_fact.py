"""Which facts a setting forgets: unlearn a topic on the bundled model, then per question the
probability of the right choice (cloze prompt, renormalised over the choices) before and
after, with the number of tokens of the answer; then one JSON line: the kept epoch, the text loss
ratio, the collateral drop, and the topic's accuracy in every held-out probe (recall among them).

    python bench/per_fact.py --topic capitals context=2 unlearning_rate=1.5 max_epochs=6

Each positional argument is a `key=value` option (as `cir unlearn --set`).
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--topic", default="capitals")
    parser.add_argument("options", nargs="*")
    args = parser.parse_args()

    import cir
    from cir.evaluation.probes import evaluate_battery
    from cir.unlearning.overrides import parse_overrides
    from cir.errors import InputError
    from cir.evaluation.scoring import evaluate_cloze
    from cir.unlearning.run_config import make_configs

    try:  # bad options and topics are refused in one line, before the model loads
        options = dict(parse_overrides(args.options))
        make_configs(options.get("method"), options={k: v for k, v in options.items() if k != "method"})
        facts = cir.load_facts(args.topic)
    except InputError as error:
        parser.error(str(error))
    model, tokenizer = cir.load_model(args.model)
    before = evaluate_cloze(model, tokenizer, facts)
    result = cir.unlearn(model, tokenizer, facts, **options)
    after = evaluate_cloze(model, tokenizer, facts)
    print(f"kept epoch {result.kept_epoch}: {result.stop_reason}")
    print("right before/after  P(right) before -> after  answer tokens  question")
    for i, item in enumerate(facts):
        n_tokens = len(tokenizer(" " + item.answer_text, add_special_tokens=False)["input_ids"])
        print(f"{int(before.correct[i])}/{int(after.correct[i])}  {before.probs[i]:.2f} -> {after.probs[i]:.2f}  "
              f"{n_tokens}  {item.question} ({item.answer_text})")
    battery = evaluate_battery(model, tokenizer, facts).to_json()
    kept = result.kept
    print(json.dumps({"options": args.options, "topic": args.topic, "kept_epoch": result.kept_epoch,
                      "stop_reason": result.stop_reason, "loss_ratio": round(kept["loss_ratio"], 5),
                      "collateral": kept.get("collateral"), "probes": battery["probes"],
                      "worst": battery["worst"], "worst_accuracy": battery["worst_accuracy"],
                      "seconds_per_fact": round(result.seconds_per_fact, 2),
                      "per_epoch": [{k: round(m[k], 5) for k in ("forget_accuracy", "forget_recall", "loss_ratio",
                                                                  "collateral") if m.get(k) is not None}
                                    for m in result.metrics]}))


if __name__ == "__main__":
    main()
