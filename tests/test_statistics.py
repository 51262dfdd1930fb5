"""Intervals, the noise floor, forget quality and PrivLeak on simulated, seeded data (no model)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from cir.evaluation import statistics
from cir.evaluation.membership import (
    METRICS,
    privleak,
    privleak_intervals,
    privleak_muse,
)
from cir.evaluation.statistics import (
    Interval,
    aucs,
    forget_quality,
    mean_interval,
    noise_floor_interval,
    privleak_interval,
    ratio_interval,
    residual_interval,
    worst_interval,
)

needs_scipy = pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="scipy is not installed")


def test_an_interval_reads_as_the_tables_show_it_and_round_trips_through_json():
    interval = Interval(0.4444, 0.28, 0.6111)
    assert str(interval) == "0.44 [0.28, 0.61]"
    assert Interval(0.056, -0.222, 0.278).signed() == "+0.06 [-0.22, +0.28]"
    assert interval.format(3) == "0.444 [0.280, 0.611]"
    assert Interval.from_json(interval.to_json()) == interval
    assert 0.5 in interval and 0.7 not in interval
    assert interval.half_width == pytest.approx(0.16555)
    with pytest.raises(ValueError, match="low end"):
        Interval(0.5, 0.6, 0.4)


def coverage(interval_of, truth: float, draw, replicates: int = 200) -> float:
    return np.mean([truth in interval_of(draw(index)) for index in range(replicates)])


@needs_scipy
def test_a_binomial_means_interval_covers_the_truth_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    rate = coverage(lambda values: mean_interval(values, n_resamples=1000), 0.3,
                    lambda _: rng.binomial(1, 0.3, 60))
    assert 0.90 <= rate <= 0.99


def test_the_stratified_bootstrap_of_one_reading_covers_a_binomial_mean_at_about_the_nominal_rate():
    """The same for the question bootstrap behind every worst reading (seeds of 30 and 40 questions)."""
    rng = np.random.default_rng(1)
    rate = coverage(lambda seeds: worst_interval(seeds, n_resamples=1000), 0.3,
                    lambda _: [rng.binomial(1, 0.3, 30), rng.binomial(1, 0.3, 40)])
    assert 0.90 <= rate <= 0.99


def test_the_worst_of_k_interval_on_a_chance_model_contains_the_simulated_mean_of_the_maximum():
    """12 readings of 18 four-choice questions at chance (the issue's worst probe): the maximum
    averages 0.42, not 0.25; the interval, the maximum taken in each replicate, contains it for
    most draws and lies above chance."""
    rng = np.random.default_rng(2)
    mean_of_maximum = rng.binomial(18, 0.25, (20000, 12)).max(axis=1).mean() / 18
    assert mean_of_maximum == pytest.approx(0.42, abs=0.01)
    intervals = [worst_interval([rng.binomial(1, 0.25, (12, 18))], n_resamples=1000) for _ in range(100)]
    assert np.mean([mean_of_maximum in interval for interval in intervals]) >= 0.8
    assert np.mean([interval.low > 0.25 for interval in intervals]) >= 0.9


def test_the_noise_floor_between_a_model_and_its_exact_copy_is_zero_with_zero_width():
    rng = np.random.default_rng(3)
    grid = [rng.binomial(1, 0.4, (3, 12, 18)).astype(float) for _ in range(2)]  # 2 seeds: attacks, probes, questions
    copy = [readings.copy() for readings in grid]
    unlearned = [rng.binomial(1, 0.4, (3, 12, 18)) for _ in range(2)]
    for select in (None, unlearned):
        assert noise_floor_interval(grid, copy, select, n_resamples=500) == Interval(0.0, 0.0, 0.0)
    assert noise_floor_interval(grid, copy, pick="largest", n_resamples=500) == Interval(0.0, 0.0, 0.0)


def test_a_residual_resamples_the_same_questions_on_both_models():
    """A model 0.1 above another on every question: unpaired resampling would give a wide interval."""
    rng = np.random.default_rng(4)
    low = [rng.random((5, 20)), rng.random((5, 30))]
    interval = residual_interval([r + 0.1 for r in low], low, n_resamples=500)
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((0.1, 0.1, 0.1))


def test_stratified_pooling_keeps_each_seeds_questions_with_their_seed():
    """Seeds with disjoint values (5 questions in [0, 1), 30 in [10, 11)): resampled within its seed,
    each seed's mean stays in its range and the pooled mean in [5, 6); mixed, a replicate drawing
    more of one seed's questions would leave it (by about 1 on either side). A seed whose
    questions all read alike adds no width."""
    rng = np.random.default_rng(5)
    seeds = {"1": rng.random(5), "2": 10 + rng.random(30)}
    interval = worst_interval(seeds, n_resamples=2000)
    assert interval.estimate == pytest.approx((seeds["1"].mean() + seeds["2"].mean()) / 2)
    assert 5 <= interval.low < interval.high < 6
    assert worst_interval([np.full(5, 0.5), np.full(30, 0.25)], n_resamples=200) == Interval(0.375, 0.375, 0.375)


def test_the_residual_is_read_at_the_attack_the_selecting_model_finds_worst():
    a = np.array([[[1, 1, 0, 0]], [[1, 1, 1, 0]]], float)  # (attacks, probes, questions): worst attack 1
    b = np.array([[[0, 0, 0, 0]], [[1, 1, 1, 1]]], float)
    assert residual_interval([a], [b], n_resamples=200).estimate == pytest.approx(-0.25)
    assert residual_interval([a], [b], select_by_seed=[b[::-1]], n_resamples=200).estimate == pytest.approx(0.5)
    assert residual_interval([a], [b], pick="largest", n_resamples=200).estimate == pytest.approx(0.5)
    with pytest.raises(TypeError, match="by seed"):
        worst_interval(a)
    with pytest.raises(ValueError, match="same questions"):
        residual_interval([a], [b[..., :3]])


def test_the_worst_reading_is_the_highest_over_probes_and_attacks():
    grid = np.zeros((2, 3, 10))
    grid[1, 2, :7] = 1
    assert worst_interval([grid], n_resamples=200).estimate == pytest.approx(0.7)


@needs_scipy
def test_forget_quality_of_identical_scores_is_one_and_of_shifted_scores_small():
    rng = np.random.default_rng(6)
    scores = rng.random(40)
    assert forget_quality(scores, scores.copy()) == 1.0
    assert forget_quality(scores, scores + 1) < 1e-6


@needs_scipy
def test_the_text_loss_ratio_resamples_texts_paired():
    before = np.random.default_rng(7).gamma(2.0, 1.0, 50)
    interval = ratio_interval(1.02 * before, before, n_resamples=500)
    assert (interval.estimate, interval.low, interval.high) == pytest.approx((1.02, 1.02, 1.02))


def test_privleak_in_muses_convention_has_its_signs_and_the_issues_number():
    assert statistics.privleak_muse(0.849, 0.480) == pytest.approx(-70.96, abs=0.01)  # signed reading +0.769
    assert statistics.privleak_signed(0.849, 0.480) == pytest.approx(0.769, abs=0.001)
    assert statistics.privleak_muse(0.5, 0.5) == 0
    assert statistics.privleak_muse(1.0, 0.5) == -100  # remembers every member
    assert statistics.privleak_muse(0.2, 0.5) > 0  # over-unlearned: members stand out the other way
    unlearned = {"auc": {m: 0.9 for m in METRICS}}
    retain = {"auc": {m: 0.5 for m in METRICS}}
    assert all(value < 0 for value in privleak_muse(unlearned, retain).values())
    assert all(value > 0 for value in privleak(unlearned, retain).values())  # the signed reading kept


def scores(rng, shift: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Members' and non-members' membership scores; members `shift` above (below when negative)."""
    return rng.normal(shift, 1, n), rng.normal(0, 1, n)


@needs_scipy
def test_privleaks_interval_resamples_members_and_nonmembers_and_keeps_muses_signs():
    rng = np.random.default_rng(8)
    retain = scores(rng, 0.0)
    remembering, over_unlearned = scores(rng, 2.0), scores(rng, -2.0)
    itself = privleak_interval(*retain, *retain, n_resamples=500)
    assert itself == Interval(0.0, 0.0, 0.0)
    assert privleak_interval(*remembering, *retain, n_resamples=500).high < 0
    assert privleak_interval(*over_unlearned, *retain, n_resamples=500).low > 0
    signed = privleak_interval(*remembering, *retain, convention="signed", n_resamples=500)
    assert signed.low > 0 and signed.estimate == pytest.approx(statistics.privleak_signed(*aucs(
        np.stack([remembering[0], retain[0]]), np.stack([remembering[1], retain[1]]))))


@needs_scipy
def test_privleak_intervals_read_every_score_of_two_mia_results():
    from cir.evaluation.membership import auc

    rng = np.random.default_rng(9)

    def result(shift):
        members, nonmembers = scores(rng, shift, 20)
        members[:3] = nonmembers[:3]  # ties count half, as in `auc`
        return {"auc": {m: auc(list(members), list(nonmembers)) for m in METRICS},
                "scores": {"members": {m: list(members) for m in METRICS},
                           "nonmembers": {m: list(nonmembers) for m in METRICS}}}

    unlearned, retain = result(1.5), result(0.0)
    intervals = privleak_intervals(unlearned, retain, n_resamples=300)
    assert {m: interval.estimate for m, interval in intervals.items()} == pytest.approx(privleak_muse(unlearned, retain))
    assert all(interval.high < 0 for interval in intervals.values())
    with pytest.raises(ValueError, match="scores=True"):
        privleak_intervals({"auc": unlearned["auc"]}, retain)


def test_seeds_given_by_key_are_paired_by_key_not_by_order():
    import numpy as np

    from cir.evaluation.statistics import residual_interval

    rng = np.random.default_rng(0)
    a = {1: rng.random((3, 20)), 2: rng.random((3, 20)) + 1.0}
    b = {1: rng.random((3, 20)), 2: rng.random((3, 20)) + 1.0}
    shuffled = {2: b[2], 1: b[1]}
    assert residual_interval(a, b, n_resamples=200) == residual_interval(a, shuffled, n_resamples=200)
    with pytest.raises(ValueError, match="same seeds"):
        residual_interval(a, {1: b[1], 3: b[2]}, n_resamples=200)


def test_a_drop_is_before_minus_the_worst_attack_and_a_ratio_of_drops_covers_the_true_ratio():
    """The drop that survives the attacks: a model that kept its before readings drops 0 with zero
    width; a simulated method whose answers fall from 0.9 to 0.5 after its worst attack (of three)
    drops about 0.4, another from 0.9 to 0.7 about 0.2, and the ratio of the two, read on the same
    questions, holds 2 at about the nominal rate. Seeds pool as strata."""
    from cir.evaluation.statistics import drop_interval, drop_ratio_interval

    rng = np.random.default_rng(4)
    before = [rng.uniform(0.85, 0.95, (3, 60)) for _ in range(2)]  # (probes, questions), two seeds
    same = drop_interval(before, [np.stack([b, b]) for b in before], n_resamples=500)
    assert same.estimate == same.low == same.high == 0

    def method(level: float) -> np.ndarray:  # three attacks; the last brings most back
        return np.stack([np.full((3, 60), 0.3), np.full((3, 60), 0.4), rng.normal(level, 0.1, (3, 60))])

    hits = []
    for _ in range(60):
        before = [np.full((3, 60), 0.9) + rng.normal(0, 0.02, (3, 60)) for _ in range(2)]
        a, b = [method(0.5) for _ in range(2)], [method(0.7) for _ in range(2)]
        drop = drop_interval(before, a, n_resamples=300)
        assert 0.3 < drop.estimate < 0.5
        hits.append(2.0 in drop_ratio_interval(before, a, before, b, n_resamples=300))
    assert np.mean(hits) >= 0.8


def test_resampling_whole_people_widens_the_interval_where_a_persons_questions_move_together():
    """Five questions per person that are copies of one another carry one person's information:
    resampled as questions the interval is about sqrt(5) too narrow; resampled by person it is as
    wide as one question per person's. Labels must name every question."""
    rng = np.random.default_rng(5)
    people = rng.binomial(1, 0.4, 20).astype(float)
    copies = np.repeat(people, 5)  # 100 questions, 20 people
    labels = np.repeat(np.arange(20), 5)
    by_question = worst_interval([copies], n_resamples=2000)
    by_person = worst_interval([copies], n_resamples=2000, clusters=[labels])
    one_each = worst_interval([people], n_resamples=2000)
    assert by_person.estimate == by_question.estimate == pytest.approx(people.mean())
    assert by_person.half_width > 1.8 * by_question.half_width
    assert by_person.half_width == pytest.approx(one_each.half_width, rel=0.2)
    with pytest.raises(ValueError, match="one label per question"):
        worst_interval([copies], clusters=[labels[:50]])
