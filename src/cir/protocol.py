"""The evaluation protocol in one place: which part of each kept set the collateral budget
watches, which part a method is given to keep and which half the tables report; the filter that
drops kept questions restating a forget fact; the measurement row every table reads (each kept
set's accuracy, V in cloze and in the worst held-out probe); and the residual against a
reference model. The demo, the comparison, the attack suite and the bench scripts all read them
here (docs/protocol.md)."""

from __future__ import annotations

from cir.data.mcq import MCQ
from cir.evaluation import evaluate_mcq
from cir.models import in_float32
from cir.probes import evaluate_battery

# each kept topic's questions in three parts: the collateral budget watches every fourth from
# the first, the method is given every fourth from the third to keep, and the tables report the
# odd half. A method that keeps only the facts it was shown is then stopped by the budget (a
# retain-aware collapse of the watched facts themselves left the budget blind to the loss of
# 5 of 36 unwatched taught people's answers: docs/results/taught.md)
WATCHED, PROTECTED, REPORTED = slice(0, None, 4), slice(2, None, 4), slice(1, None, 2)


def watched_retain_sets(forget: list[MCQ], sets: dict[str, list[MCQ]],
                        half: int | slice | None = 0) -> dict[str, list[MCQ]]:
    """The retain fact sets a run watches: each set's questions `half` (0: even, 1: odd
    positions; a slice: those positions; None: all), without those that ask a forget question or state a forget fact
    again: the same answer about the same subject, or where either has no subject, the same
    answer (a user's own capitals file next to the built-in capitals). Facts about other
    subjects that share an answer (two invented people born in Oslo) stay."""
    def key(item: MCQ) -> tuple[str | None, str]:
        return (item.subject.strip().casefold() if item.subject else None, item.answer_text.strip().lower())

    stated = {key(item) for item in forget}
    unattributed = {answer for subject, answer in stated if subject is None}
    answers = {answer for _, answer in stated}
    questions = {item.question.strip().lower() for item in forget}

    def restates(item: MCQ) -> bool:
        subject, answer = key(item)
        return (subject, answer) in stated or answer in unattributed or (subject is None and answer in answers)

    watched = {}
    for name, items in sets.items():
        chosen = items if half is None else items[half if isinstance(half, slice) else slice(half, None, 2)]
        chosen = [item for item in chosen if not restates(item) and item.question.strip().lower() not in questions]
        if chosen:
            watched[name] = chosen
    return watched


def accuracies(model, tokenizer, sets: dict[str, list[MCQ]]) -> dict[str, float]:
    return {name: evaluate_mcq(model, tokenizer, items).accuracy for name, items in sets.items()}


def worst_probe(model, tokenizer, held_out: list[MCQ], floor: float = 0.0) -> dict:
    """V in the worst held-out probe (at least `floor`: an attack's best cloze epoch)."""
    battery = evaluate_battery(model, tokenizer, held_out)
    return {"V worst": max(battery.worst_accuracy, floor), "_probes": battery.to_json()}


def measure(model, tokenizer, topics: dict[str, list[MCQ]], held_out: list[MCQ]) -> dict:
    """A row: each topic's accuracy, V's (cloze) and V in the worst held-out probe; a bfloat16 or
    float16 model's weights are read in float32 (as the stop rule reads them), so a row is the
    same whichever precision the model is held in."""
    with in_float32(model):
        row = accuracies(model, tokenizer, topics)
        row["V"] = evaluate_mcq(model, tokenizer, held_out).accuracy
        return row | worst_probe(model, tokenizer, held_out)


def residual(row: dict, reference: dict, keys=("V", "V worst")) -> dict:
    """The residual: each of `keys` (V in cloze and in the worst probe) minus the reference
    model's under the same attack; 0 is "as the reference", below 0 lower than it."""
    return {key: row[key] - reference[key] for key in keys}


RESIDUALS = ("V_worst_after_relearning", "V_worst_after_quantisation")


def residual_of(row: dict, never_taught: dict | None) -> dict:
    """V in the worst probe after each attack minus the never-taught model's under the same attack
    (0: as if never learned); {} without a never-taught model."""
    if never_taught is None:
        return {}
    out = {f"residual_{key}": value for key, value in residual(row, never_taught, RESIDUALS).items()}
    if "worst_attack" in row and "grid_V_worst" in never_taught:  # the same attack on both models
        out["residual_V_worst_after_worst_attack"] = (row["V_worst_after_worst_attack"]
                                                      - never_taught["grid_V_worst"][row["worst_attack"]])
    return out
