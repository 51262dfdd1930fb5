"""Model load times (first: GGUF conversion; then: cached safetensors) and the speed of
multiple-choice evaluation: 200 questions x 4 choices on the bundled model."""

from __future__ import annotations

import argparse
import time

from _common import write_section


def main() -> None:
    # no options: --help says what is measured, without measuring it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    from cir.data import builtin_topics, load_mcq
    from cir.evaluation.scoring import evaluate_cloze, evaluate_letters
    from cir.models import load_model, time_bundled_loads

    loads = time_bundled_loads()
    model, tokenizer = load_model()
    items = [q for t in builtin_topics() for q in load_mcq(t)][:200]
    evaluate_cloze(model, tokenizer, items[:8])  # warm-up
    start = time.perf_counter()
    evaluate_cloze(model, tokenizer, items)
    cloze_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate_letters(model, tokenizer, items)
    letters_s = time.perf_counter() - start
    write_section("eval", f"""## Loading and evaluation (bundled SmolLM2-135M)

| what | seconds |
|---|---|
| first load (GGUF dequantised, converted, cached as safetensors) | {loads['first_load_s']:.1f} |
| later load (from the cache) | {loads['cached_load_s']:.1f} |
| cloze MCQ evaluation, {len(items)} questions x 4 choices (target < 60 s) | {cloze_s:.1f} |
| letters MCQ evaluation, {len(items)} questions | {letters_s:.1f} |
""")


if __name__ == "__main__":
    main()
