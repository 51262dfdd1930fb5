"""Probe prompts: the same questions asked in other ways.

cloze:       "Question: {q}\\nAnswer:" (the default evaluation)
qa:          "Q: {q}\\nA:"
declarative: "The answer to the question \\"{q}\\" is"
letters:     the lettered multiple-choice prompt (cir.evaluation.scoring.evaluate_letters)
kshot:       k solved examples drawn (seeded) from *other* questions of the set, then the cloze prompt

The probe battery (`evaluate_battery`) asks every question in every way held out from
training: the cloze prompt; each of the item's own rewordings (`probes` in the fact file:
"reworded_1", ...), in the cloze framing; the qa framing; the item's declarative stem
(`statement`, e.g. "The capital of France is"; the generic declarative prompt when absent);
k-shot; and recall: the cloze prompt with each choice scored by its first token only, the
prediction that recalls the fact (asked of the questions whose choices all begin with different
tokens). Summed over a many-token answer, the other probes also count a broken spelling of the
answer (" Ljub" -> "ljana") as forgetting; recall does not. Each probe is also read the other way
("cloze, least likely": the choice the model finds least likely taken as its answer): a model
pushed to avoid the right answer scores far below chance in the usual reading, and what it
avoids is what it still knows. Its **worst** is the highest accuracy over the readings: for a
forgotten topic, where the knowledge shows through most.
"""

from __future__ import annotations

import random


from dataclasses import dataclass

from cir.errors import OptionError
from cir.data.mcq import MCQ
from cir.evaluation.scoring import MCQResult, cloze_prompt, evaluate_letters, evaluate_prompts

TEMPLATES = {
    "cloze": cloze_prompt,
    "qa": lambda q: f"Q: {q.strip()}\nA:",
    "declarative": lambda q: f"The answer to the question \"{q.strip()}\" is",
}
PROBE_FORMATS = ("cloze", "qa", "declarative", "letters", "kshot")
LEAST_LIKELY = "least likely"  # a probe read the other way: the least likely choice taken as the answer


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
        raise OptionError(f"unknown probe format '{fmt}' ({', '.join(PROBE_FORMATS)})")
    return [TEMPLATES[fmt](item.question) for item in items]


def probe_mcq(model, tokenizer, items: list[MCQ], fmt: str = "cloze", k: int = 3, seed: int = 0):
    """Accuracy of `items` under one probe format (an MCQ scoring function, like evaluate_mcq)."""
    if fmt == "letters":
        return evaluate_letters(model, tokenizer, items)
    return evaluate_prompts(model, tokenizer, items, probe_prompts(items, fmt, k, seed))


def battery_prompts(items: list[MCQ], k: int = 3, seed: int = 0) -> dict[str, tuple[list[int], list[str]]]:
    """Probe name -> (indices of the items it asks, their prompts). Every probe asks every item,
    except the rewordings, which ask the items that have that many."""
    every = list(range(len(items)))
    probes = {"cloze": (every, probe_prompts(items, "cloze")), "qa": (every, probe_prompts(items, "qa"))}
    for n in range(max((len(item.probes) for item in items), default=0)):
        rows = [i for i, item in enumerate(items) if len(item.probes) > n]
        probes[f"reworded_{n + 1}"] = (rows, [cloze_prompt(items[i].probes[n]) for i in rows])
    probes["statement"] = (every, [item.statement or TEMPLATES["declarative"](item.question) for item in items])
    if len(items) > 1:
        probes["kshot"] = (every, kshot_prompts(items, k, seed))
    return probes


@dataclass
class BatteryResult:
    per_probe: dict[str, MCQResult]

    @property
    def worst(self) -> str:
        """The probe with the highest accuracy (the first such, in the battery's order)."""
        return max(self.per_probe, key=lambda name: self.per_probe[name].accuracy)

    @property
    def worst_accuracy(self) -> float:
        return self.per_probe[self.worst].accuracy

    def to_json(self) -> dict:
        return {"probes": {name: r.accuracy for name, r in self.per_probe.items()},
                "n": {name: r.n for name, r in self.per_probe.items()},
                "worst": self.worst, "worst_accuracy": self.worst_accuracy}


def recall_rows(tokenizer, items: list[MCQ]) -> list[int]:
    """The items whose choices all begin with different tokens: those the recall probe asks."""
    def first(choice: str) -> int | None:
        ids = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
        return ids[0] if ids else None

    return [i for i, item in enumerate(items) if len({first(c) for c in item.choices}) == len(item.choices)]


def recall_note(asked: int, total: int) -> str | None:
    """Why the recall probe asks `asked` of a set's `total` questions, in words (None: it asks all)."""
    if asked >= total:
        return None
    left = total - asked
    others = "the other one has" if left == 1 else f"the other {left} have"
    return (f"recall asks {asked} of the {total} questions: {others} choices that begin with the same token, "
            "which recall (each choice scored by its first token) cannot tell apart")


def recall_probe(tokenizer, items: list[MCQ]) -> dict[str, tuple[list[int], list[str]]]:
    """{"recall": (the items it asks, their cloze prompts)}, or {} when none qualifies."""
    rows = recall_rows(tokenizer, items)
    return {"recall": (rows, [cloze_prompt(items[i].question) for i in rows])} if rows else {}


def cloze_and_recall(model, tokenizer, items: list[MCQ]) -> tuple[float, float | None]:
    """(cloze accuracy, recall accuracy or None when no question qualifies) in one scoring pass:
    recall reads the cloze prompts' own forward passes."""
    probes = {"cloze": (list(range(len(items))), probe_prompts(items, "cloze"))} | recall_probe(tokenizer, items)
    result = score_probes(model, tokenizer, items, probes)
    return result.per_probe["cloze"].accuracy, (result.per_probe["recall"].accuracy if "recall" in probes else None)


def evaluate_battery(model, tokenizer, items: list[MCQ], k: int = 3, seed: int = 0) -> BatteryResult:
    """Accuracy of `items` under every probe of the battery, in one scoring pass (the recall
    probe reads the cloze prompt's forward passes: it costs no extra one)."""
    return score_probes(model, tokenizer, items, battery_prompts(items, k, seed) | recall_probe(tokenizer, items))


def score_probes(model, tokenizer, items: list[MCQ], probes: dict[str, tuple[list[int], list[str]]]) -> BatteryResult:
    """Accuracy under each probe (name -> (indices of the items it asks, their prompts)), in one
    scoring pass; the recall probe scores each choice by its first token."""
    rows = [i for indices, _ in probes.values() for i in indices]
    prompts = [p for _, texts in probes.values() for p in texts]
    first_token = [name == "recall" for name, (indices, _) in probes.items() for _ in indices]
    scored = evaluate_prompts(model, tokenizer, [items[i] for i in rows], prompts, first_token=first_token)
    per_probe, start = {}, 0
    for name, (indices, _) in probes.items():
        correct = scored.correct[start : start + len(indices)]
        probs = scored.probs[start : start + len(indices)]
        lowest = scored.lowest[start : start + len(indices)]
        answer_probs = scored.answer_probs[start : start + len(indices)]
        per_probe[name] = MCQResult(accuracy=sum(correct) / len(correct), n=len(correct),
                                    correct_prob=sum(probs) / len(probs), correct=correct,
                                    probs=probs, lowest=lowest, answer_probs=answer_probs)
        start += len(indices)
    for name, result in list(per_probe.items()):  # each probe read the other way, after all of them
        per_probe[f"{name}, {LEAST_LIKELY}"] = MCQResult(
            accuracy=sum(result.lowest) / result.n, n=result.n, correct_prob=result.correct_prob,
            correct=result.lowest, probs=result.probs, lowest=result.correct, answer_probs=result.answer_probs)
    return BatteryResult(per_probe)
