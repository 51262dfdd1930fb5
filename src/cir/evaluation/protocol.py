"""The evaluation protocol in one place: which part of each kept set the collateral budget
watches, which part a method is given to keep and which half the tables report; the filter that
drops kept questions restating a forget fact; the measurement row every table reads (each kept
set's accuracy, V in cloze and in the worst held-out probe); and the residual against a
reference model. The demo, the comparison, the attack suite and the bench scripts all read them
here (docs/protocol.md)."""

from __future__ import annotations

from cir.data.mcq import MCQ
from cir.evaluation.scoring import evaluate_mcq
from cir.models import in_float32
from cir.evaluation.probes import evaluate_battery
from cir.evaluation.rows import Row, Score

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


def kept_for_attack(watched: dict[str, list[MCQ]]) -> list[MCQ]:
    """The kept facts a relearning attack on kept facts may train on: the first kept set's (the
    benchmark's knowledge of F's kind) watched quarter, never its reported half. The demo and
    the comparison both draw them here."""
    return list(next(iter(watched.values()), []))


def accuracies(model, tokenizer, sets: dict[str, list[MCQ]]) -> dict[str, float]:
    return {name: evaluate_mcq(model, tokenizer, items).accuracy for name, items in sets.items()}


def measure(model, tokenizer, topics: dict[str, list[MCQ]], held_out: list[MCQ], stage: str = "before",
            best=None) -> Row:
    """A row: each fact set of `topics` in cloze, V in cloze and in every held-out probe, and the
    worst probe. `best`: V's best reading during an attack (an MCQResult: a relearning attack's
    best epoch), which stands for V's cloze reading and is a floor under the worst probe. A
    bfloat16 or float16 model's weights are read in float32 (as the stop rule reads them), so a
    row is the same whichever precision the model is held in."""
    with in_float32(model):
        sets = {name: Score.of(evaluate_mcq(model, tokenizer, items)) for name, items in topics.items()}
        cloze = Score.of(best if best is not None else evaluate_mcq(model, tokenizer, held_out))
        battery = evaluate_battery(model, tokenizer, held_out)
    probes = {name: Score.of(result) for name, result in battery.per_probe.items()}
    worst, worst_score = battery.worst, probes[battery.worst]
    if best is not None and cloze.accuracy > worst_score.accuracy:  # the attack's best epoch reads higher
        worst, worst_score = "cloze, the attack's best epoch", cloze
    return Row(stage, V=cloze, V_worst=worst_score, sets=sets, probes=probes, worst_probe=worst)


def worst_probe(model, tokenizer, held_out: list[MCQ]) -> float:
    """V's accuracy in the worst held-out probe."""
    return evaluate_battery(model, tokenizer, held_out).worst_accuracy


def residual(row: Row, reference: Row) -> dict[str, float]:
    """The residual: V in cloze and in the worst probe minus the reference model's under the same
    attack; 0 is "as the reference", below 0 lower than it."""
    return {"V": row.V.accuracy - reference.V.accuracy, "V worst": row.V_worst.accuracy - reference.V_worst.accuracy}


RESIDUALS = ("V_worst_after_relearning", "V_worst_after_quantisation")


def residual_of(row: dict, never_taught: dict | None) -> dict:
    """V in the worst probe after each attack minus the never-taught model's under the same attack
    (0: as if never learned); {} without a never-taught model."""
    if never_taught is None:
        return {}
    out = {f"residual_{key}": row[key] - never_taught[key] for key in RESIDUALS}
    if "worst_attack" in row and "grid_V_worst" in never_taught:  # the same attack on both models
        out["residual_V_worst_after_worst_attack"] = (row["V_worst_after_worst_attack"]
                                                      - never_taught["grid_V_worst"][row["worst_attack"]])
    return out
