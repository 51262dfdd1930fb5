"""Where the membership signal of `taught`'s forgotten people sits: each fact sentence's tokens in
three regions (the person's name, the answer, the rest of the sentence), and per region the
members' (F's sentences) and non-members' (the never-taught people's) mean log-probability and
the AUC of the region's mean, on the never-taught, the taught, the retain and an unlearned model.

    python bench/privleak_regions.py --run runs/grid/cir-s1

A region whose AUC the unlearned model keeps far above the retain model's is what PrivLeak reads
and the unlearning did not move.
"""

from __future__ import annotations

import argparse
import statistics
import sys

REGIONS = ("name", "answer", "rest")


def regions(tokenizer, sentence: str, name: str, answer: str) -> list[str]:
    """The region of each scored token (every token after the first), by character offsets."""
    spans = {"name": [], "answer": []}
    for region, text in (("name", name), ("answer", answer)):
        start = sentence.find(text)
        while start >= 0:
            spans[region].append((start, start + len(text)))
            start = sentence.find(text, start + 1)
    offsets = tokenizer(sentence, return_offsets_mapping=True)["offset_mapping"]
    out = []
    for begin, end in offsets[1:]:
        inside = [r for r, found in spans.items() if any(b < end and begin < e for b, e in found)]
        out.append(inside[0] if inside else "rest")
    return out


def region_scores(model, tokenizer, items) -> dict[str, list[float]]:
    """Per region, each sentence's mean token log-probability there (sentences without it left out)."""
    from cir.evaluation.membership import token_logprobs

    sentences = [(s, item.subject, item.answer_text) for item in items for s in item.sentences()]
    logprobs = token_logprobs(model, tokenizer, [s for s, _, _ in sentences])
    out = {r: [] for r in REGIONS}
    for (sentence, name, answer), lp in zip(sentences, logprobs):
        labels = regions(tokenizer, sentence, name, answer)[: lp.numel()]
        for r in REGIONS:
            values = [float(v) for v, label in zip(lp, labels) if label == r]
            if values:
                out[r].append(statistics.fmean(values))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="an unlearned `taught` run directory (cir demo --out)")
    args = parser.parse_args()

    from cir.evaluation.membership import auc
    from cir.benchmarks import TeachRecipe, invented_people, taught_model
    from cir.models import load_model

    base, tokenizer = load_model()
    recipe = TeachRecipe()
    forget, _, strangers = invented_people(recipe)
    models = {"never taught": base, "taught": taught_model(base, tokenizer, recipe, progress=False)[0],
              "retain": taught_model(base, tokenizer, recipe, progress=False, retain=True)[0],
              "unlearned": load_model(args.run)[0]}
    lines = ["| model | " + " | ".join(f"{r}: members / non-members, AUC" for r in REGIONS) + " |",
             "|---|" + "---|" * len(REGIONS)]
    for label, model in models.items():
        pos, neg = region_scores(model, tokenizer, forget), region_scores(model, tokenizer, strangers)
        cells = [f"{statistics.fmean(pos[r]):.2f} / {statistics.fmean(neg[r]):.2f}, {auc(pos[r], neg[r]):.3f}"
                 for r in REGIONS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(f"\n`python bench/privleak_regions.py {' '.join(sys.argv[1:])}`: mean token log-probability per region")


if __name__ == "__main__":
    main()
