"""The budgets that stop an unlearning run: the held-out general text's disruption (loss ratio
or KL against the original model) and the collateral damage to the watched fact sets (the
largest accuracy drop), and the rule that sizes the collateral budget to one question."""

from __future__ import annotations

import copy
import dataclasses
import math

from cir.data.mcq import MCQ
from cir.errors import OptionError
from cir.evaluation.scoring import evaluate_cloze, text_kl, text_loss


class Disruption:
    """Held-out general-text disruption: loss ratio to the original, or KL(original || model)."""

    def __init__(self, model, tokenizer, texts: list[str], kind: str, original_loss: float | None = None):
        self.tokenizer, self.texts, self.kind = tokenizer, texts, kind
        self.original_loss = text_loss(model, tokenizer, texts) if original_loss is None else original_loss
        self.original = copy.deepcopy(model) if kind == "kl" else None

    def original_row(self) -> dict:
        """The measurements of the original model, already taken: epoch 0's row."""
        values = {"text_loss": self.original_loss, "loss_ratio": 1.0} | ({"kl": 0.0} if self.original is not None else {})
        return values | {"disruption": values[self.kind]}

    def __call__(self, model) -> dict:
        loss = text_loss(model, self.tokenizer, self.texts)
        values = {"text_loss": loss, "loss_ratio": loss / self.original_loss}
        if self.original is not None:
            values["kl"] = text_kl(self.original, model, self.tokenizer, self.texts)
        values["disruption"] = values[self.kind]
        return values


class Collateral:
    """Other knowledge as the model is asked it: cloze accuracy on each retain fact set, and
    the largest drop from the original model's over the sets."""

    def __init__(self, model, tokenizer, sets: dict[str, list[MCQ]], original: dict[str, float] | None = None):
        self.tokenizer, self.sets = tokenizer, sets
        self.original = self.accuracies(model) if original is None else dict(original)

    def accuracies(self, model) -> dict[str, float]:
        return {name: evaluate_cloze(model, self.tokenizer, items).accuracy for name, items in self.sets.items()}

    def original_row(self) -> dict:
        return {"collateral": 0.0, "retain_accuracy": dict(self.original)}

    def __call__(self, model) -> dict:
        now = self.accuracies(model)
        drop = max(self.original[name] - now[name] for name in now)
        return {"collateral": drop, "retain_accuracy": now}

    def summary(self, now: dict[str, float]) -> dict:
        """Each set's accuracy before and `now` (a row's "retain_accuracy"), its questions and the
        questions it lost (net: those answered before less those answered now), and `worst`: the
        set whose accuracy dropped most (the first of a tie), which the collateral budget reads."""
        sets = {}
        for name, items in self.sets.items():
            before, after = self.original[name], now[name]
            sets[name] = {"before": before, "after": after, "questions": len(items),
                          "lost": round(before * len(items)) - round(after * len(items))}
        worst = max(sets, key=lambda name: sets[name]["before"] - sets[name]["after"])
        return {"sets": sets, "worst": worst}


def one_question(sets: dict[str, list]) -> float:
    """The collateral budget that lets the smallest of `sets` (n questions) lose one question and
    not two (a larger set may lose more, in proportion): the first hundredth above 1/n (0.13 for 8
    questions, 0.1 for 11, 0.09 for 12) where that is below 1.5/n (under 100 questions), else
    1.5/n; at most 1."""
    if not sets or not all(sets.values()):
        raise OptionError("one question of a watched set needs at least one non-empty set")
    n = min(len(items) for items in sets.values())
    return min((math.floor(100 / n) + 1) / 100, 1.5 / n, 1.0)


def resolve_collateral(run, sets: dict[str, list] | None):
    """`run` (a RunConfig) with a collateral budget of None made one question of the smallest watched set
    (0 where nothing is watched: the budget reads nothing then)."""
    if run.collateral_budget is not None:
        return run
    return dataclasses.replace(run, collateral_budget=one_question(sets) if sets else 0.0)
