"""Intervals of rows: the statistics module (cir.evaluation.statistics) applied to what rows hold.

A row keeps each question's reading in every probe; here those readings become the arrays the
bootstrap resamples, so that every headline of the demo (and any table of rows) carries its 95%
interval: a model's worst probe, its residual against a reference under the same attack, the
residual at the worst attack of a grid, the noise floor between two references, a kept set's
change. Rows come one per seed (lists), so that seeds pool as strata.

Two scores: `accuracy` (each question right or wrong) and `probability` (the probability of the
correct choice, renormalised over the choices: the headline, which has more power per question
and shows answers pushed below a stranger's level). The worst probe is read over the probes that
ask every question of V (a rewording that exists for some questions, or the recall probe where
choices share a first token, is left out of the interval's maximum), and, for an attack, also
V's reading that the attack reported (a relearning attack's best epoch).
"""

from __future__ import annotations

import numpy as np

from cir.evaluation.rows import Row, Score
from cir.evaluation.statistics import (Interval, drop_interval, drop_ratio_interval, noise_floor_interval,
                                       residual_interval, worst_interval)

SCORES = {"accuracy": "correct", "probability": "probs"}


def values(score: Score, name: str) -> list[float]:
    """Each question's reading of `score` under the score `name`."""
    if name not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {name!r}")
    return [float(v) for v in getattr(score, SCORES[name])]


def readings(row: Row, name: str = "probability") -> np.ndarray:
    """(probes, questions): V under every probe that asks all of V's questions, and V's own reading."""
    n = len(row.V.correct)
    if not n:
        raise ValueError(f"the row '{row.name}' keeps no question's reading (a row read back without them)")
    arrays = [values(score, name) for score in row.probes.values() if len(score.correct) == n]
    return np.array(arrays + [values(row.V, name)], dtype=float)


def grid(rows: list[Row], name: str = "probability") -> np.ndarray:
    """(attacks, probes, questions): the rows of one model under each attack of a grid, in order."""
    return np.stack([readings(row, name) for row in rows])


def worst(rows: list[Row], name: str = "probability", **options) -> Interval:
    """V in the worst probe, one row per seed."""
    return worst_interval([readings(row, name) for row in rows], **options)


def residual(rows: list[Row], references: list[Row], name: str = "probability", **options) -> Interval:
    """V in the worst probe minus the reference's under the same attack, one pair of rows per seed."""
    return residual_interval([readings(row, name) for row in rows], [readings(row, name) for row in references],
                             **options)


def worst_attack_residual(grids: list[list[Row]], references: list[list[Row]], name: str = "probability",
                          **options) -> Interval:
    """The residual at the worst attack of a grid (the attack with the highest worst probe on the
    first model, chosen again inside each replicate), one list of rows per seed, in one order."""
    return residual_interval([grid(rows, name) for rows in grids], [grid(rows, name) for rows in references],
                             **options)


def noise_floor(retain: list[list[Row]], never_taught: list[list[Row]], unlearned: list[list[Row]],
                name: str = "probability", **options) -> Interval:
    """The retain model minus the never-taught model (both never learned F) under the attack that
    is the unlearned model's worst: the residual a model that never learned F shows; grids by seed."""
    return noise_floor_interval([grid(rows, name) for rows in retain], [grid(rows, name) for rows in never_taught],
                                [grid(rows, name) for rows in unlearned], **options)


def change(after: list[Row], before: list[Row], fact_set: str, name: str = "accuracy", **options) -> Interval:
    """A fact set's change from `before` to `after` (paired over its questions), one pair per seed."""
    return residual_interval([values(row.sets[fact_set], name) for row in after],
                             [values(row.sets[fact_set], name) for row in before], **options)


def drop(before: list[Row], grids: list[list[Row]], name: str = "probability", **options) -> Interval:
    """V's worst probe before unlearning minus the worst reading after a grid's attacks (the worst
    attack chosen again in each replicate): what stayed forgotten; a row and a grid per seed."""
    return drop_interval([readings(row, name) for row in before], [grid(rows, name) for rows in grids], **options)


def drop_ratio(before: list[Row], grids: list[list[Row]], other_before: list[Row], other_grids: list[list[Row]],
               name: str = "probability", **options) -> Interval:
    """One method's drop over another's on the same questions (RepSelect's robustness ratio)."""
    return drop_ratio_interval([readings(row, name) for row in before], [grid(rows, name) for rows in grids],
                               [readings(row, name) for row in other_before],
                               [grid(rows, name) for rows in other_grids], **options)
