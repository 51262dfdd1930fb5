"""Intervals on every headline, the noise floor, TOFU's forget quality and PrivLeak's two readings.

The headline readings are means over questions (a probe's accuracy, its probability of the right
answer) taken over a handful of questions, then a maximum: the worst probe, the worst attack. An
interval must carry that selection, so the bootstrap here resamples questions and takes the
maximum again inside every replicate (docs/protocol.md, "Intervals"):

- **questions are resampled**, with replacement, the same resampled questions for every reading
  of every model in a replicate (paired: a residual's two models answer the same questions);
- **seeds are strata**: each seed's questions are resampled within that seed, each seed's
  statistic computed on its own questions, and the pooled statistic is the mean over the seeds
  (the tables' mean over seeds);
- the interval is the 2.5th and 97.5th percentile of 4,000 replicates by default.

A maximum's interval is one for the expected worst reading, which selection raises: resampled,
readings that vary independently (a model at chance) are selected again, so the interval sits
above the observed maximum, whose estimate may lie at its low end or just below it. On a model
at chance it covers the simulated mean of the maximum (tests/test_statistics.py).

Readings come as arrays of per-question values, one array per seed:
(questions,) for one reading, (probes, questions) for the readings of one model under one attack,
(attacks, probes, questions) for a grid. A model's worst probe is the maximum over probes; the
worst attack is the attack with the highest worst probe (the first of a tie, as the tables pick it).

Plain means, the text-loss ratio and PrivLeak's AUCs have no selection and no strata:
`scipy.stats.bootstrap` does those. scipy is imported where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 4000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval; JSON: [estimate, low, high]."""

    estimate: float
    low: float
    high: float

    def __post_init__(self):
        if self.low > self.high:
            raise ValueError(f"an interval's low end {self.low} is above its high end {self.high}")

    def __str__(self) -> str:
        return self.format()

    def format(self, digits: int = 2, sign: bool = False) -> str:
        """`0.44 [0.28, 0.61]`; with `sign`, `+0.06 [-0.22, +0.28]` (a residual, a change)."""
        spec = f"{'+' if sign else ''}.{digits}f"
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def signed(self, digits: int = 2) -> str:
        return self.format(digits, sign=True)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_json(self) -> list[float]:
        return [self.estimate, self.low, self.high]

    @classmethod
    def from_json(cls, data: Sequence[float]) -> Interval:
        estimate, low, high = data
        return cls(float(estimate), float(low), float(high))

    @classmethod
    def cell(cls, data: Sequence[float] | None, sign: bool = False) -> str:
        """A JSON interval as a table cell: 3 digits, a signed one (a residual, a change) 2; "-" for none."""
        return "-" if data is None else cls.from_json(data).format(2 if sign else 3, sign)


# ---------------------------------------------------------------- the stratified paired bootstrap
def _as_grid(values, seed_index: int) -> np.ndarray:
    """(attacks, probes, questions): one reading or one attack's readings get the missing axes."""
    grid = np.asarray(values, dtype=float)
    if grid.ndim not in (1, 2, 3):
        raise ValueError(f"seed {seed_index}: readings must be (questions,), (probes, questions) or "
                         f"(attacks, probes, questions), got shape {grid.shape}")
    if grid.shape[-1] < 1 or not np.isfinite(grid).all():
        raise ValueError(f"seed {seed_index}: readings need at least one question and finite values "
                         "(a reading must ask every question)")
    return grid.reshape((1,) * (3 - grid.ndim) + grid.shape)


def _strata(models: Sequence) -> list[list[np.ndarray]]:
    """Per seed, each model's readings as (attacks, probes, questions), the same questions for all."""
    if any(isinstance(m, np.ndarray) for m in models):  # one seed's (probes, questions) would read as seeds
        raise TypeError("readings go by seed: pass a list of arrays (one per seed) or a dict keyed by seed")
    keyed = [m for m in models if isinstance(m, Mapping)]
    if keyed and (len(keyed) < len(models) or any(set(m) != set(keyed[0]) for m in keyed)):
        raise ValueError("readings keyed by seed must all be keyed by the same seeds")
    by_model = [[m[key] for key in sorted(m)] if isinstance(m, Mapping) else list(m) for m in models]
    n_seeds = len(by_model[0])
    if n_seeds == 0 or any(len(m) != n_seeds for m in by_model):
        raise ValueError(f"every model needs readings for the same seeds (at least one), got "
                         f"{[len(m) for m in by_model]} seeds")
    strata = []
    for index in range(n_seeds):
        grids = [_as_grid(m[index], index) for m in by_model]
        if len({g.shape[-1] for g in grids}) > 1:
            raise ValueError(f"seed {index}: the models answer different numbers of questions "
                             f"({[g.shape[-1] for g in grids]}); a paired interval needs the same questions")
        strata.append(grids)
    return strata


def _weights(n: int, clusters, n_resamples: int, rng) -> np.ndarray:
    """(replicates, questions): each question's weight in a replicate's mean. Without `clusters`,
    the times it was drawn over n; with them (a label per question), whole clusters are drawn and
    a question weighs as often as its cluster was drawn, over the questions drawn."""
    if clusters is None:
        return rng.multinomial(n, np.full(n, 1 / n), size=n_resamples) / n
    labels, index = np.unique(np.asarray(clusters), return_inverse=True)
    if len(index) != n:
        raise ValueError(f"clusters: one label per question, got {len(index)} for {n} questions")
    counts = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), size=n_resamples)
    drawn = counts[:, index].astype(float)  # (replicates, questions)
    return drawn / drawn.sum(1, keepdims=True)


def stratified_bootstrap(models: Sequence, statistic: Callable[..., np.ndarray], n_resamples: int = N_RESAMPLES,
                         seed: int = 0, confidence: float = CONFIDENCE, clusters=None) -> Interval:
    """The paired bootstrap over questions, stratified by seed. `models`: per model, its readings
    by seed (a list, or a dict keyed by seed), each (questions,), (probes, questions) or
    (attacks, probes, questions). `statistic(*means)` takes each model's means over questions,
    (attacks, probes, replicates), and returns one value per replicate: the maximum over probes
    and attacks belongs there. A replicate resamples each seed's questions within the seed, the
    same for every model; the pooled value is the mean over seeds of each seed's statistic. The
    interval is the replicates' percentile interval. `clusters`: per seed, a label per question
    (the person it asks about): whole clusters are resampled instead, for questions that move
    together (a person's questions are forgotten, or kept, together)."""
    rng = np.random.default_rng(seed)
    estimates, replicates = [], []
    strata = _strata(models)
    if clusters is not None and len(clusters) != len(strata):
        raise ValueError(f"clusters: one list of labels per seed ({len(strata)}), got {len(clusters)}")
    for index, grids in enumerate(strata):
        n = grids[0].shape[-1]
        weights = _weights(n, None if clusters is None else clusters[index], n_resamples, rng)
        estimates.append(statistic(*[g.mean(-1, keepdims=True) for g in grids])[0])
        replicates.append(statistic(*[g @ weights.T for g in grids]))  # (attacks, probes, replicates)
    low, high = np.percentile(np.mean(replicates, axis=0), [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(float(np.mean(estimates)), float(low), float(high))


def _worst_probe(means: np.ndarray) -> np.ndarray:
    """(attacks, replicates): each attack's highest reading over the probes."""
    return means.max(axis=1)


def _worst(means: np.ndarray) -> np.ndarray:
    return _worst_probe(means).max(axis=0)


def worst_interval(readings_by_seed, n_resamples: int = N_RESAMPLES, seed: int = 0,
                   confidence: float = CONFIDENCE, clusters=None) -> Interval:
    """One model's worst reading (the highest mean over questions among its probes and attacks),
    the maximum taken inside each replicate; pooled over seeds as the mean of each seed's worst.
    A single reading per seed, (questions,), gives a plain mean stratified by seed."""
    return stratified_bootstrap([readings_by_seed], _worst, n_resamples, seed, confidence, clusters)


def residual_interval(a_by_seed, b_by_seed, select_by_seed=None, pick: str = "worst",
                      n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                      clusters=None) -> Interval:
    """Model a's worst probe minus model b's under the same attack, on the same questions (paired).
    Over a grid (attacks, probes, questions) the attack is chosen inside each replicate:
    `pick="worst"`, the attack where `select_by_seed`'s worst probe is highest (default: a's, the
    tables' worst attack); `pick="largest"`, the attack with the largest residual. Single readings,
    (questions,) per seed, give a paired change of a mean (a kept set's change: after, before)."""
    if pick not in ("worst", "largest"):
        raise ValueError(f"pick must be 'worst' or 'largest', got {pick!r}")
    models = [a_by_seed, b_by_seed] + ([select_by_seed] if select_by_seed is not None else [])

    def statistic(a, b, select=None):
        residual = _worst_probe(a) - _worst_probe(b)  # (attacks, replicates)
        chooser = residual if pick == "largest" else _worst_probe(a if select is None else select)
        chosen = chooser.argmax(axis=0)  # the first of a tie
        return np.take_along_axis(residual, chosen[None], axis=0)[0]

    return stratified_bootstrap(models, statistic, n_resamples, seed, confidence, clusters)


def noise_floor_interval(retain_by_seed, never_taught_by_seed, select_by_seed=None, pick: str = "worst",
                         n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                         clusters=None) -> Interval:
    """The measurement's own noise floor: the residual between the two references, the retain model
    minus the never-taught model, both of which never learned F, under the same attack and on the
    same questions. Shown beside every residual; a residual inside it is indistinguishable from
    "never learned". Pass the unlearned model's readings as `select_by_seed` to read it at the
    unlearned model's worst attack, as its residual is."""
    return residual_interval(retain_by_seed, never_taught_by_seed, select_by_seed, pick, n_resamples, seed,
                             confidence, clusters)


def drop_interval(before_by_seed, after_by_seed, n_resamples: int = N_RESAMPLES, seed: int = 0,
                  confidence: float = CONFIDENCE, clusters=None) -> Interval:
    """What an unlearning took away that no attack brought back: the model's worst probe before
    unlearning minus its worst reading after the attacks (the worst attack's worst probe, chosen
    again inside each replicate), on the same questions."""
    return stratified_bootstrap([before_by_seed, after_by_seed], lambda a, b: _worst(a) - _worst(b),
                                n_resamples, seed, confidence, clusters)


def drop_ratio_interval(before_by_seed, after_by_seed, other_before_by_seed, other_after_by_seed,
                        n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE,
                        clusters=None) -> Interval:
    """RepSelect's robustness ratio: one method's drop (drop_interval) over another's, both read on
    the same questions and resampled together. Where the other's drop can be 0 the ratio has no
    bound: read it only where the other's drop interval excludes 0."""
    def statistic(a, b, c, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (_worst(a) - _worst(b)) / (_worst(c) - _worst(d))

    return stratified_bootstrap([before_by_seed, after_by_seed, other_before_by_seed, other_after_by_seed],
                                statistic, n_resamples, seed, confidence, clusters)


# ---------------------------------------------------------------- plain means and ratios (scipy)
def _scipy_interval(data: tuple, statistic, paired: bool, n_resamples: int, seed: int, confidence: float) -> Interval:
    from scipy.stats import bootstrap

    result = bootstrap(data, statistic, n_resamples=n_resamples, paired=paired, vectorized=True, axis=-1,
                       confidence_level=confidence, method="percentile", rng=seed)
    estimate = statistic(*data, axis=-1)
    return Interval(float(estimate), float(result.confidence_interval.low), float(result.confidence_interval.high))


def _values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) < 2 or not np.isfinite(array).all():
        raise ValueError(f"{name}: an interval needs at least two finite values in one dimension, "
                         f"got shape {array.shape}")
    return array


def mean_interval(values, n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """The mean of per-question (or per-text) values and its percentile bootstrap interval."""
    return _scipy_interval((_values(values, "values"),), np.mean, False, n_resamples, seed, confidence)


def _ratio_of_means(after, before, axis=-1):
    return np.mean(after, axis=axis) / np.mean(before, axis=axis)


def ratio_interval(after, before, n_resamples: int = N_RESAMPLES, seed: int = 0,
                   confidence: float = CONFIDENCE) -> Interval:
    """mean(after) / mean(before) over the same texts, resampling texts (paired): the text-loss
    ratio. Per-text summed token losses give the token-weighted ratio the disruption budget reads;
    per-text mean losses weigh every text alike."""
    after, before = _values(after, "after"), _values(before, "before")
    if len(after) != len(before):
        raise ValueError(f"a paired ratio needs the same texts: {len(after)} after, {len(before)} before")
    if before.mean() == 0:
        raise ValueError("the ratio's denominator (mean of `before`) is 0")
    return _scipy_interval((after, before), _ratio_of_means, True, n_resamples, seed, confidence)


# ---------------------------------------------------------------- TOFU's forget quality
def forget_quality(scores_unlearned, scores_retain) -> float:
    """TOFU's forget quality: the two-sample Kolmogorov-Smirnov test's p-value of the forget set's
    per-question scores on the unlearned model against the retain model's (1: indistinguishable;
    small: the unlearned model's scores come from another distribution)."""
    from scipy.stats import ks_2samp

    unlearned, retain = np.asarray(scores_unlearned, dtype=float), np.asarray(scores_retain, dtype=float)
    if unlearned.size == 0 or retain.size == 0:
        raise ValueError("forget quality needs scores on both models")
    return float(ks_2samp(unlearned, retain).pvalue)


# ---------------------------------------------------------------- PrivLeak
def privleak_signed(auc_unlearned, auc_retain):
    """The signed reading: the usual AUC's change relative to the retain model's; positive = the
    members still stand out (under-unlearned), negative = they stand out the other way
    (over-unlearned), 0 = as the retain model."""
    return (auc_unlearned - auc_retain) / auc_retain


def privleak_muse(auc_unlearned, auc_retain):
    """PrivLeak as MUSE reports it, in percent: MUSE's AUC is 1 - the usual AUC, and PrivLeak is
    its change relative to the retain model's; a model that still remembers scores negative (down
    to -100), an over-unlearned one positive, the retain model 0."""
    return 100 * ((1 - auc_unlearned) - (1 - auc_retain)) / (1 - auc_retain)


PRIVLEAK = {"muse": privleak_muse, "signed": privleak_signed}


def aucs(members, nonmembers, axis: int = -1) -> np.ndarray:
    """ROC AUC of members' scores against non-members' along `axis` (ties counting half: the
    Mann-Whitney U over the product of the sizes)."""
    from scipy.stats import rankdata

    members, nonmembers = np.moveaxis(members, axis, -1), np.moveaxis(nonmembers, axis, -1)
    m, n = members.shape[-1], nonmembers.shape[-1]
    ranks = rankdata(np.concatenate([members, nonmembers], axis=-1), axis=-1)
    return (ranks[..., :m].sum(-1) - m * (m + 1) / 2) / (m * n)


def privleak_interval(members_unlearned, nonmembers_unlearned, members_retain, nonmembers_retain,
                      convention: str = "muse", n_resamples: int = N_RESAMPLES, seed: int = 0,
                      confidence: float = CONFIDENCE) -> Interval:
    """PrivLeak (`convention`: "muse", MUSE's percent, or "signed", the usual AUC's relative change)
    from per-text membership scores of the same members and non-members on the unlearned and the
    retain model. Members and non-members are resampled each within their group, the same
    resampled texts on both models."""
    if convention not in PRIVLEAK:
        raise ValueError(f"convention must be one of {', '.join(PRIVLEAK)}, got {convention!r}")
    formula = PRIVLEAK[convention]
    if len(members_unlearned) != len(members_retain) or len(nonmembers_unlearned) != len(nonmembers_retain):
        raise ValueError("PrivLeak needs the same members and non-members scored on both models")
    members = np.stack([_values(members_unlearned, "members_unlearned"), _values(members_retain, "members_retain")])
    nonmembers = np.stack([_values(nonmembers_unlearned, "nonmembers_unlearned"),
                           _values(nonmembers_retain, "nonmembers_retain")])

    def statistic(members, nonmembers, axis=-1):
        unlearned, retain = aucs(members, nonmembers, axis)  # (2, ...): both models, the same texts
        with np.errstate(divide="ignore", invalid="ignore"):
            return formula(unlearned, retain)

    if not np.isfinite(statistic(members, nonmembers)):
        raise ValueError(f"PrivLeak ({convention}) is undefined: the retain model's AUC leaves a zero denominator")
    return _scipy_interval((members, nonmembers), statistic, False, n_resamples, seed, confidence)
