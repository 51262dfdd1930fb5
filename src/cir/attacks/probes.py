"""Probe prompts: the same questions asked in other ways.

cloze:       "Question: {q}\\nAnswer:" (the default evaluation)
qa:          "Q: {q}\\nA:"
declarative: "The answer to the question \\"{q}\\" is"
letters:     the lettered multiple-choice prompt (cir.evaluation.evaluate_letters)
kshot:       k solved examples drawn (seeded) from *other* questions of the set, then the cloze prompt
"""

from __future__ import annotations

import random


from cir.data.mcq import MCQ
from cir.evaluation import cloze_prompt, evaluate_letters, evaluate_prompts

TEMPLATES = {
    "cloze": cloze_prompt,
    "qa": lambda q: f"Q: {q.strip()}\nA:",
    "declarative": lambda q: f"The answer to the question \"{q.strip()}\" is",
}
PROBE_FORMATS = ("cloze", "qa", "declarative", "letters", "kshot")


def kshot_prompt(item: MCQ, examples: list[MCQ]) -> str:
    shots = "".join(f"{cloze_prompt(e.question)} {e.answer_text}\n\n" for e in examples)
    return shots + cloze_prompt(item.question)


def kshot_prompts(items: list[MCQ], k: int, seed: int = 0, pool: list[MCQ] | None = None) -> list[str]:
    """One k-shot prompt per item; examples come from `pool` (default: the set), never the item itself."""
    rng = random.Random(seed)
    pool = items if pool is None else pool
    prompts = []
    for item in items:
        others = [e for e in pool if e.question != item.question]
        prompts.append(kshot_prompt(item, rng.sample(others, min(k, len(others)))))
    return prompts


def probe_prompts(items: list[MCQ], fmt: str, k: int = 3, seed: int = 0) -> list[str]:
    if fmt == "kshot":
        return kshot_prompts(items, k, seed)
    if fmt not in TEMPLATES:
        raise ValueError(f"unknown probe format '{fmt}' ({', '.join(PROBE_FORMATS)})")
    return [TEMPLATES[fmt](item.question) for item in items]


def probe_mcq(model, tokenizer, items: list[MCQ], fmt: str = "cloze", k: int = 3, seed: int = 0):
    """Accuracy of `items` under one probe format (an MCQ scoring function, like evaluate_mcq)."""
    if fmt == "letters":
        return evaluate_letters(model, tokenizer, items)
    return evaluate_prompts(model, tokenizer, items, probe_prompts(items, fmt, k, seed))
