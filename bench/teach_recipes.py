"""Try recipes for the `taught` benchmark's teaching: what the model learns of the invented
people, and what it keeps of the built-in topics, after every epoch.

    python bench/teach_recipes.py --try "replay=true" --try "lr=1e-4 epochs=12"

Each --try is a set of `field=value` changes to cir.benchmarks.TeachRecipe (an empty one: the
default recipe), taught from the bundled model's original weights and cached as `cir demo
--benchmark taught` caches it (a recipe taught before is not measured again). After every epoch: cloze and recall of
the forgotten and the kept people, the cloze accuracy of every built-in topic, and the loss on
the held-out half of the model's own general-text samples (never trained on). Each recipe
is appended as a JSON line to --records; `--table` rewrites the section `teach-recipes` of
docs/sweep.md from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import torch


def parse_recipe(text: str):
    """TeachRecipe with the `key=value` changes of `text`, read as `cir unlearn --set` reads them."""
    import typing

    from cir.benchmarks import TeachRecipe
    from cir.unlearning.overrides import parse_overrides
    from cir.fields import typed_value

    hints = typing.get_type_hints(TeachRecipe)
    changes = {}
    for key, value in parse_overrides(shlex.split(text)):
        if key not in hints:
            raise SystemExit(f"unknown recipe field '{key}' (known: {', '.join(hints)})")
        try:
            changes[key] = typed_value(value, hints[key])
        except ValueError as error:
            raise SystemExit(f"{key} {error}, got {value!r}") from None
    return TeachRecipe(**changes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--try", dest="tries", action="append", default=[])
    parser.add_argument("--records", default="docs/teach-recipes.jsonl")
    parser.add_argument("--table", metavar="MARKDOWN", help="(re)write the recipes' table in MARKDOWN, then stop")
    args = parser.parse_args()
    if args.table:
        return write_table(Path(args.records), Path(args.table))
    if not args.tries:
        parser.error("give at least one --try (or --table)")

    from cir.attacks.suite import accuracies
    from cir.benchmarks import invented_people, knowledge, taught_model
    from cir.data.mcq import topic_sets
    from cir.evaluation.scoring import text_loss
    from cir.data.general import general_text_split
    from cir.models import load_model

    base, tokenizer = load_model(args.model)
    topics = topic_sets()
    before = accuracies(base, tokenizer, topics)
    heldout = general_text_split(base, tokenizer)[1]
    loss_before = text_loss(base, tokenizer, heldout)
    for text in args.tries:
        recipe = parse_recipe(text)
        forget, kept, _ = invented_people(recipe)
        epochs = []

        def on_epoch(student, epoch: int, loss: float, epochs=epochs, forget=forget, kept=kept) -> None:
            known = knowledge(student, tokenizer, {"forget": forget, "kept": kept})
            epochs.append({"epoch": epoch + 1, "loss": loss, "known": known,
                           "topics": accuracies(student, tokenizer, topics),
                           "heldout_text_loss": text_loss(student, tokenizer, heldout),
                           "seconds": time.perf_counter() - start})
            print(json.dumps(epochs[-1]), flush=True)

        start = time.perf_counter()
        try:
            taught, record = taught_model(base, tokenizer, recipe, progress=False, on_epoch=on_epoch)
            short = None
        except RuntimeError as error:
            short = str(error)
        if not epochs:
            print(f"{text}: taught before, nothing measured (remove {record['cached_at']} to teach it again)")
            continue
        record = {"recipe": dataclasses.asdict(recipe), "changes": text, "topics_before": before,
                  "heldout_text_loss_before": loss_before, "epochs": epochs,
                  "short": short, "seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
                  "command": "python bench/teach_recipes.py " + shlex.join(["--try", text])}
        with open(args.records, "a") as f:
            f.write(json.dumps(record) + "\n")


# what a recipe did before each of these fields existed (records made then lack them)
FORMER = {"replay": False, "batching": "shuffled", "replay_loss": "tokens"}


def write_table(records: Path, markdown: Path) -> None:
    """Every recipe's last epoch and its best epoch for the topics, one row each."""
    from _common import replace_section
    from cir.tables import markdown_table

    from cir.benchmarks import TeachRecipe

    default = dataclasses.asdict(TeachRecipe())

    def recipe(record: dict) -> str:  # how it differs from today's default recipe
        used = FORMER | record["recipe"]
        changed = [f"{k}={str(v).lower()}" for k, v in used.items() if default.get(k) != (
            tuple(v) if isinstance(default.get(k), tuple) else v)]
        return f"`{' '.join(changed)}`" if changed else "the default"

    rows = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    names = list(rows[0]["topics_before"]) if rows else []
    header = (["recipe (against today's default)", "epoch", "forget cloze / recall", "kept cloze / recall"] + names
              + ["held-out text loss", "s"])
    loss = next((r["heldout_text_loss_before"] for r in rows if "heldout_text_loss_before" in r), None)
    body = [["original", "-", "-", "-"] + [f"{rows[0]['topics_before'][t]:.3f}" for t in names]
            + [_loss(loss), "-"]] if rows else []
    for r in rows:
        for e in r["epochs"]:
            k = e["known"]
            body.append([recipe(r), e["epoch"], f"{k['forget']['cloze']:.3f} / {k['forget']['recall']:.3f}",
                         f"{k['kept']['cloze']:.3f} / {k['kept']['recall']:.3f}"]
                        + [f"{e['topics'][t]:.3f}" for t in names] + [_loss(e.get("heldout_text_loss")),
                                                                       f"{e['seconds']:.0f}"])
    block = f"<!-- teach-recipes:start -->\n{markdown_table(header, body)}\n<!-- teach-recipes:end -->"
    replace_section(markdown, "teach-recipes", block)
    print(block)


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"  # records made before it was measured lack it


if __name__ == "__main__":
    sys.exit(main())
