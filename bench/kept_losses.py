"""Which kept answers an unlearning run takes, by whether the kept person shares a name word with
a forgotten one, and by the part of the kept set they sit in (watched by the collateral budget,
given to the method to keep, or reported).

    python bench/kept_losses.py --try "update_tokens=subject unlearning_rate=3.0 max_epochs=2"
    python bench/kept_losses.py --shared-names --split halves --try "..."

Runs on the `taught` benchmark with its budgets lifted (text loss and collateral), so every
epoch of the --try is kept: it asks where the damage falls, not where a budget would stop.
`--shared-names` teaches (or reads from the cache) the recipe whose people were drawn from all
name pairs; `--split halves` gives the method the watched half itself, as runs did before the
kept sets were split in three parts. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--try", dest="overrides", required=True, help="key=value options, as `cir unlearn --set`")
    parser.add_argument("--shared-names", action="store_true", help="the recipe whose people share names")
    parser.add_argument("--split", choices=("parts", "halves"), default="parts")
    args = parser.parse_args()

    from cir.benchmarks import TeachRecipe, make_setting
    from cir.unlearning.overrides import build_configs
    from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED
    from cir.evaluation.scoring import evaluate_mcq
    from cir.unlearning.loop import run_unlearning
    from cir.evaluation.protocol import watched_retain_sets
    from cir.models import load_model

    base, tokenizer = load_model()
    setting = make_setting("taught", base, tokenizer, recipe=TeachRecipe(distinct_names=not args.shared_names))
    model, kept = setting.model, setting.topics["people (kept)"]
    forgotten = {word for item in setting.forget for word in item.subject.split()}
    if args.split == "parts":
        watched, protected = (watched_retain_sets(setting.forget, setting.topics, p) for p in (WATCHED, PROTECTED))
        parts = {"watched": WATCHED, "protected": PROTECTED, "reported": REPORTED}
    else:
        watched, protected = watched_retain_sets(setting.forget, setting.topics, 0), None
        parts = {"watched and protected": slice(0, None, 2), "reported": slice(1, None, 2)}
    before = evaluate_mcq(model, tokenizer, kept).correct
    run, config = build_configs(overrides=["budget=100", "collateral_budget=1"] + shlex.split(args.overrides))
    result = run_unlearning(model, tokenizer, setting.forget, *setting.general, run, config, progress=False,
                            retain_sets=watched, protect_sets=protected)
    after = evaluate_mcq(model, tokenizer, kept).correct
    position = {}
    for name, part in parts.items():
        position |= {i: name for i in range(len(kept))[part]}
    groups = {}
    for i, (item, known, still) in enumerate(zip(kept, before, after)):
        if not known:
            continue
        shares = bool(set(item.subject.split()) & forgotten)
        group = groups.setdefault(f"{position[i]}, {'shares' if shares else 'shares no'} name word", [0, []])
        group[0] += 1
        if not still:
            group[1].append(f"{item.subject}: {item.answer_text}")
    print(json.dumps({
        "try": args.overrides, "shared_names": args.shared_names, "split": args.split,
        "epochs": result.kept_epoch, "loss_ratio": round(result.kept["loss_ratio"], 4),
        "forget_cloze": round(evaluate_mcq(model, tokenizer, setting.forget).accuracy, 3),
        "kept_known_and_lost": {name: {"known": n, "lost": len(lost), "which": lost} for name, (n, lost) in
                                sorted(groups.items())}}))


if __name__ == "__main__":
    sys.exit(main())
