"""T and V: the forget set split in two by subject (the T/V protocol of the CIR paper, after
Deeb & Roger). The attacker trains on T; forgetting is read on V, whose subjects T never holds."""

from __future__ import annotations

import random

from cir.data.mcq import MCQ
from cir.errors import InputError, OptionError
from cir.evaluation.scoring import evaluate_mcq


def split_forget(items: list[MCQ], ratio: float = 0.5, seed: int = 0, model=None, tokenizer=None,
                 drop_wrong: bool = False) -> tuple[list[MCQ], list[MCQ]]:
    """(T, V): a seeded `ratio` of the questions to attack with, the rest to evaluate. Questions
    with the same `subject` go to the same side (no subject is in both); a question without one
    is a subject of its own. Subjects are drawn in a seeded order until T holds its share.

    With `drop_wrong`, questions `model` (the base model) answers wrongly are dropped first:
    they cannot be "restored"."""
    if not 0 < ratio < 1:
        raise InputError(f"the T/V ratio must be between 0 and 1, got {ratio}")
    if drop_wrong:
        if model is None:
            raise OptionError("drop_wrong needs the base model and tokenizer")
        correct = evaluate_mcq(model, tokenizer, items).correct
        items = [item for item, ok in zip(items, correct) if ok]
    groups = subject_groups(items)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_train, train = round(len(items) * ratio), []
    for group in order:
        if len(train) >= n_train:
            break
        train += groups[group]
    if not train or len(train) == len(items):
        raise InputError(f"cannot split {len(items)} questions ({len(groups)} subjects) into non-empty T and V "
                         f"at ratio {ratio}")
    chosen = set(train)
    return [items[i] for i in sorted(chosen)], [items[i] for i in range(len(items)) if i not in chosen]


def subject_groups(items: list[MCQ]) -> list[list[int]]:
    """Indices of `items` grouped by subject (case-insensitive), in order of first appearance;
    an item without a subject is a group of its own."""
    groups: dict = {}
    for i, item in enumerate(items):
        key = item.subject.strip().casefold() if item.subject else ("item", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def check_apart(train: list[MCQ], held_out: list[MCQ], names: tuple[str, str] = ("T", "V")) -> None:
    """Refuse a T and a V that overlap: a question of V asked again in T (case and spacing aside),
    or a subject of V that T holds (as split_forget never makes them). An attack trained on V's
    own facts would read what it taught, not what came back. `names`: how the caller spells the
    two (--train, --eval)."""
    def key(text: str) -> str:
        return " ".join(text.split()).casefold()

    questions = {key(item.question) for item in train}
    subjects = {key(item.subject) for item in train if item.subject}
    asked = sum(key(item.question) in questions for item in held_out)
    about = sum(key(item.question) not in questions and bool(item.subject) and key(item.subject) in subjects
                for item in held_out)
    if asked or about:
        how = ", ".join(part for part in (f"{asked} the same question" if asked else "",
                                          f"{about} the same subject" if about else "") if part)
        raise InputError(f"{names[0]} and {names[1]} overlap: {asked + about} of the {len(held_out)} questions of "
                         f"{names[1]} are in {names[0]} ({how}); an attack trained on them would read what it "
                         f"taught, not what came back: give {names[1]} questions about other subjects")
