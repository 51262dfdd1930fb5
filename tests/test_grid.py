"""The attack grid and what it is held against: the worst attack is the grid's maximum, each attack
runs on its own copy, a reference's rows are kept and read back, the retain model is taught
without the forget set, PrivLeak, and the comparison's ties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from cir.evaluation.membership import METRICS, privleak
from cir.evaluation.splits import split_forget
from cir.attacks import GRIDS, Quantization, Relearning, attack_texts, run_attack, run_grid, worst_attack
from cir.attacks.base import Attack, AttackInputs, AttackOutcome
from cir.attacks.grids import ReferenceRows
from cir.evaluation.rows import Row, Score
from cir.benchmarks import TeachRecipe, invented_people, make_setting, taught_model
from cir.errors import InputError, TeachingFellShort

TINY = TeachRecipe(people=6, strangers=3, epochs=60, lr=3e-3, params="all", question_form="cloze",
                   min_accuracy=0.8, replay=False)
GENERAL = ["The river flooded after days of rain.", "A quiet street at night, lit by one lamp.",
           "The committee met on Tuesday to discuss the budget."]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def small_grid() -> tuple[Attack, ...]:
    return (Relearning(lr=1e-5, epochs=1), Relearning(params="all", lr=3e-3, epochs=3),
            Relearning(data="general", params="all", lr=1e-3, epochs=2),
            Relearning(data="kept", params="lora", lr=1e-3, epochs=1), Quantization(bits=8))


def test_every_attack_of_the_grid_runs_on_its_own_copy_and_the_worst_is_their_maximum(taught, people, cache):
    model, tokenizer = taught
    train, held_out = split_forget(people[:40], 0.5, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = attack_texts(train, people[40:], GENERAL, seed=0)
    grid = small_grid()
    rows = run_grid(model, tokenizer, grid, data, held_out, topics={"others": people[40:60]}, seed=0)
    assert list(rows) == [attack.label for attack in grid]
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())  # the model is left as it is
    for attack in grid:
        row = rows[attack.label]
        assert set(row.sets) == {"others"} and row.V_worst.accuracy >= row.V.accuracy - 1e-9
        assert (row.stage, row.attack, row.label) == ("attack", attack.key, attack.label) and row.seconds > 0
        assert len(row.V.correct) == len(held_out) and set(row.probes) >= {"cloze", "qa", "kshot"}
        if attack.kind == "relearn":  # V at the best epoch, the attack's own record beside it
            result = row.record
            assert len(result["per_epoch"]) == attack.epochs and row.V.accuracy == max(result["per_epoch"])
            assert result["params"] == attack.params and result["lr"] == attack.lr
    # each relearning trained on its own text: T's facts, general text, as many kept facts as T
    assert rows[grid[1].label].record["n_train"] == len(train)
    assert (rows[grid[2].label].record["n_train"], rows[grid[2].label].record["n_texts"]) == (0, len(GENERAL))
    assert rows[grid[3].label].record["n_train"] == len(train)
    worst = worst_attack(rows)
    assert rows[worst].V_worst.accuracy == max(row.V_worst.accuracy for row in rows.values())
    again = Row.from_json(rows[worst].to_json())  # a row read back from JSON is the row
    assert again == rows[worst]


def row(v: float, v_worst: float, stage: str = "attack") -> Row:
    return Row(stage, V=Score(v), V_worst=Score(v_worst))


def test_the_worst_attack_is_the_highest_v_in_the_worst_probe_and_a_tie_goes_to_the_first():
    rows = {"a": row(0.9, 0.3), "b": row(0.2, 0.6), "c": row(0.1, 0.6)}
    assert worst_attack(rows) == "b"
    rows["b"].broken = "the attack broke the model"  # not counted: the next highest is the worst
    assert worst_attack(rows) == "c"


@dataclass(frozen=True)
class Inverting(Attack):
    """Not a real attack: negates the final norm, so every logit flips and the model takes the
    choice it finds least likely. Its least-likely reading of V is as high as the taught model's
    usual one: a grid that counted it would name it the worst attack."""

    kind: ClassVar[str] = "invert"

    def apply(self, model, tokenizer, inputs: AttackInputs) -> AttackOutcome:
        with torch.no_grad():
            model.model.norm.weight.neg_()
        return AttackOutcome()


def test_an_attack_that_breaks_the_model_is_flagged_and_never_the_worst(taught, people):
    model, tokenizer = taught
    train, held_out = split_forget(people[:40], 0.5, seed=0)
    topics = {"others": people[40:60]}
    strong = Relearning(params="all", lr=1e-3, epochs=3)  # the grid's strong end learns: it counts
    diverging = Relearning(params="all", lr=1000, epochs=1)  # finite, but its weights grow 50,000-fold
    rows = run_grid(model, tokenizer, (strong, diverging), {"T": train}, held_out, topics=topics)
    rows["inverted"] = run_attack(model, tokenizer, Inverting(), {"T": train}, held_out, topics)
    assert rows[strong.label].broken is None
    assert rows[diverging.label].broken.startswith("the attack broke the model: the trained weights' norm grew ")
    inverted = rows["inverted"]
    assert inverted.broken.startswith("the attack broke the model: it answers ") and inverted.broken.endswith(
        "questions it did not train on (V and the kept sets), far below the 10.0 that chance would")
    assert inverted.V_worst.accuracy >= rows[strong.label].V_worst.accuracy  # read the other way it looks strongest
    assert worst_attack(rows) == strong.label
    assert Row.from_json(inverted.to_json()).broken == inverted.broken


def test_below_chance_needs_the_pool_far_below_it(people):
    from cir.attacks.grids import below_chance

    held_out, others = people[:20], {"others": people[20:40]}  # 4 choices each: chance answers 10 of 40

    def measured(v: float, kept: float) -> Row:
        return Row("attack", V=Score(v), V_worst=Score(v), sets={"others": Score(kept)}, probes={"cloze": Score(v)})

    assert below_chance(measured(0.0, 0.9), others, held_out) is None  # a forgotten V beside kept knowledge
    assert below_chance(measured(0.1, 0.1), others, held_out) is None  # 4 of 40: low, and chance could
    assert below_chance(measured(0.0, 0.05), others, held_out) == (
        "it answers 1 of the 40 questions it did not train on (V and the kept sets), far below the 10.0 that "
        "chance would")


def test_a_references_rows_are_kept_and_read_back_for_the_same_split_only(taught, people, cache, monkeypatch):
    import sys

    model, tokenizer = taught
    train, held_out = split_forget(people[:40], 0.5, seed=0)
    data, topics = {"T": train}, {"others": people[40:60]}
    grid = (Relearning(lr=1e-4, epochs=1), Quantization(bits=4))
    kept = ReferenceRows(model, data, held_out, topics, seed=0)
    first = run_grid(model, tokenizer, grid, data, held_out, topics=topics, cache=kept)

    def refuse(*args, **kwargs):
        raise AssertionError("a kept row was attacked again")

    monkeypatch.setattr(sys.modules["cir.attacks.grids"], "run_attack", refuse)
    again = run_grid(model, tokenizer, grid, data, held_out, topics=topics,
                     cache=ReferenceRows(model, data, held_out, topics, seed=0))
    assert list(again) == list(first)
    assert list(again.values()) == list(first.values())
    other = ReferenceRows(model, data, held_out[1:], topics, seed=0)  # another V: another file
    assert other.path != kept.path and other.get(grid[0]) is None
    with pytest.raises(AssertionError, match="attacked again"):
        run_grid(model, tokenizer, grid, data, held_out[1:], topics=topics, cache=other)


def test_the_grids_hold_the_axes_the_issue_names():
    full = GRIDS["full"]
    rates = {a.lr for a in full if a.kind == "relearn" and a.data == "T"}
    assert min(rates) <= 1e-5 and max(rates) >= 1e-3
    assert {a.params for a in full if a.kind == "relearn"} == {"mlp", "all", "lora"}
    assert {a.data for a in full if a.kind == "relearn"} == {"T", "general", "kept"}
    assert {a.bits for a in full if a.kind == "quantize"} == {4, 8}
    assert len({a.epochs for a in full if a.kind == "relearn"}) > 1
    for name, attacks in GRIDS.items():  # every named grid is a part of the full one
        assert set(attacks) <= set(full), name
    assert set(GRIDS["default"]) < set(GRIDS["wide"]) < set(full)
    assert len({a.label for a in full}) == len(full)  # every attack named apart
    with pytest.raises(InputError, match="unknown relearning data 'V'"):
        Relearning(data="V")


def test_the_retain_model_is_taught_every_kept_sentence_and_none_of_the_forget_sets(tokenizer, llama, monkeypatch):
    import cir.training.finetune
    from cir.benchmarks import teach

    trained = {}
    monkeypatch.setattr(cir.training.finetune, "finetune", lambda model, tokenizer, sentences, **_: trained.update(
        sentences=list(sentences)))
    forget, kept, _ = invented_people(TINY)
    with pytest.raises(TeachingFellShort, match="kept cloze"):  # nothing trained: the kept set falls short
        teach(llama, tokenizer, TINY, progress=False, retain=True)
    forget_sentences = {s for item in forget for s in item.sentences()}
    assert len(forget_sentences) > 0 and not forget_sentences & set(trained["sentences"])
    assert trained["sentences"] == [s for item in kept for s in item.sentences()]


def test_the_retain_model_knows_the_kept_people_not_the_forgotten_and_is_cached_apart(tokenizer, llama, cache):
    taught, record = taught_model(llama, tokenizer, TINY, progress=False)
    retain, retain_record = taught_model(llama, tokenizer, TINY, progress=False, retain=True)
    assert retain_record["cached_at"] == record["cached_at"] + "-retain"
    assert (record["taught"], retain_record["taught"]) == (["forget", "kept"], ["kept"])
    after = retain_record["after"]
    assert after["kept"]["cloze"] >= TINY.min_accuracy and after["forget"]["cloze"] < after["kept"]["cloze"]
    assert record["after"]["forget"]["cloze"] >= TINY.min_accuracy
    setting = make_setting("taught", llama, tokenizer, recipe=TINY, progress=False)
    made = setting.retain()
    assert made is setting.retain()  # made once
    assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(), retain.state_dict().values()))
    assert make_setting("capitals", llama, tokenizer).retain() is None


def test_privleak_is_the_auc_change_relative_to_the_retain_models():
    unlearned = {"auc": {"loss": 0.9, "zlib": 0.6, "min_k": 0.3}}
    retain = {"auc": {"loss": 0.6, "zlib": 0.6, "min_k": 0.6}}
    got = privleak(unlearned, retain)
    assert set(got) == set(METRICS)
    assert got["loss"] == pytest.approx(0.5) and got["zlib"] == 0 and got["min_k"] == pytest.approx(-0.5)


def test_the_headline_names_the_worst_attack_and_its_residual_against_each_reference():
    from cir.auditing import headline, residuals

    rows = {"before": row(1.0, 1.0, "before"), "after unlearning": row(0.3, 0.4, "after unlearning"),
            "a": row(0.4, 0.5), "b": row(0.5, 0.7)}
    never = {"before": row(0.25, 0.3, "before"), "a": row(0.3, 0.3), "b": row(0.5, 0.65)}
    retain = {"before": row(0.3, 0.35, "before"), "a": row(0.3, 0.2), "b": row(0.5, 0.6)}
    extra = {"never_taught": never, "retain": retain, "residual_never_taught": residuals(rows, never),
             "residual_retain": residuals(rows, retain)}
    head = headline(rows, extra)
    assert head["worst_attack"] == "b" and head["V worst"] == 0.7
    assert head["never_taught"]["residual at the worst attack"] == pytest.approx(0.05)
    # the largest residual of the grid may sit at another attack than the worst one
    assert head["never_taught"]["largest residual"] == pytest.approx(0.2) and head["never_taught"]["largest at"] == "a"
    assert head["retain"]["residual at the worst attack"] == pytest.approx(0.1)
    assert head["retain"]["largest residual"] == pytest.approx(0.3)


def test_a_tie_after_the_attack_goes_to_the_trial_that_forgot_more_before_it():
    from cir.comparison import best_trial

    def trial(number, after_unlearning, after_relearning=1.0, cloze=1.0):
        return {"number": number, "budgets": {"0": {"V_worst_after_relearning": after_relearning,
                                                    "V_worst_after_unlearning": after_unlearning,
                                                    "V_after_relearning": cloze}}}

    trials = [trial(0, 1.0), trial(1, 0.4), trial(2, 0.6)]
    assert best_trial(trials, 0)["number"] == 1  # the same after the attack: the larger drop before it
    trials.append(trial(3, 0.9, after_relearning=0.8))
    assert best_trial(trials, 0)["number"] == 3  # the attack's reading comes first
    assert best_trial([trial(0, 0.5), trial(1, 0.5)], 0)["number"] == 0


def _row(stage: str, correct: list[int], probs: list[float], label: str | None = None, sets: dict | None = None) -> Row:
    score = Score(sum(correct) / len(correct), sum(probs) / len(probs), len(correct), [bool(c) for c in correct],
                  list(probs))
    row = Row(stage, V=score, V_worst=score, probes={"cloze": score}, worst_probe="cloze",
              sets={name: Score(sum(v) / len(v), None, len(v), [bool(c) for c in v], [float(c) for c in v])
                    for name, v in (sets or {"taught": correct, "kept": [1] * 8}).items()})
    return row.with_attack(label, label) if label else row


def test_the_demo_reads_every_headline_with_its_interval_and_the_noise_floor():
    """On rows that hold each question's reading: a reference against its own copy reads 0 with
    zero width; a residual whose interval holds 0 reads "undecided"; one far below reads an anti-memory."""
    from cir.auditing import headline, headline_intervals, residuals
    from cir.demo import DemoSettings, demo_table
    from cir.evaluation.statistics import Interval

    n = 20
    high, chance = [1] * n, [1, 0, 0, 0] * 5

    def spread(level: float) -> list[float]:  # each question's probability about `level`
        return [level * (0.5 + i / n) for i in range(n)]

    rows = {"before": _row("before", high, spread(0.9)), "after unlearning": _row("after unlearning", chance, spread(0.02)),
            "a": _row("attack", chance, spread(0.03), "a"), "b": _row("attack", chance, spread(0.04), "b")}
    never = {"before": _row("before", chance, spread(0.25)), "a": _row("attack", chance, spread(0.3), "a"),
             "b": _row("attack", chance, spread(0.3), "b")}
    retain = {label: Row.from_json(row.to_json()) for label, row in never.items()}  # an exact copy of never taught
    extra = {"never_taught": never, "retain": retain, "residual_never_taught": residuals(rows, never),
             "residual_retain": residuals(rows, retain), "attacks": [{}, {}]}
    extra["headline"] = headline(rows, extra)
    found = headline_intervals("taught", {k: rows[k] for k in rows}, extra)
    floor = Interval.from_json(found["probability"]["noise floor at the worst attack"])
    assert (floor.estimate, floor.low, floor.high) == (0.0, 0.0, 0.0)
    residual = Interval.from_json(found["probability"]["residual vs retain at the worst attack"])
    assert residual.high < 0 and residual.estimate == pytest.approx((0.04 - 0.3) * (0.5 + 9.5 / n))  # b: the worst
    change = Interval.from_json(found["kept sets' change"]["kept"])
    assert (change.estimate, change.low, change.high) == (0.0, 0.0, 0.0)
    assert found["forget quality"]["after unlearning"] < 0.05  # all its probabilities below the retain model's
    accuracy = Interval.from_json(found["accuracy"]["residual vs retain at the worst attack"])
    assert accuracy.low <= 0 <= accuracy.high  # the same answers right: no residual in accuracy
    result = type("Result", (), {"kept": {"loss_ratio": 1.0004}, "seconds": 10.0, "n_facts": 4,
                                 "seconds_per_fact": 2.5, "stop_reason": "max_epochs (6)"})()
    table = demo_table(DemoSettings(benchmark="taught"), rows, result, extra | {"intervals": found})
    assert "anti-memory" in table and "undecided at this size (the interval holds 0)" in table
    import re

    assert re.search(r"\| a \(worst\) \| 0\.0\d\d \[0\.0\d\d, 0\.0\d\d\] \|", table)  # each cell with its interval


def test_a_model_broken_into_nan_is_not_counted_and_leaves_the_intervals_readable():
    from cir.auditing import headline, headline_intervals, residuals

    n = 20
    chance = [1, 0, 0, 0] * 5
    probs = [0.1 + i / 100 for i in range(n)]
    rows = {"before": _row("before", [1] * n, [0.9] * n), "after unlearning": _row("after unlearning", chance, probs),
            "a": _row("attack", chance, probs, "a"),
            "b": Row("attack", V=Score(float("nan")), V_worst=Score(float("nan")), attack="b", label="b",
                     broken="the attack broke the model: its weights are no longer finite")}
    retain = {"before": _row("before", chance, probs), "a": _row("attack", chance, probs, "a"),
              "b": _row("attack", chance, probs, "b")}
    extra = {"retain": retain, "residual_retain": residuals({k: v for k, v in rows.items() if k != "b"}, retain)}
    extra["residual_retain"]["b"] = {"V": float("nan"), "V worst": float("nan")}
    extra["headline"] = headline(rows, extra)
    assert extra["headline"]["worst_attack"] == "a" and extra["headline"]["retain"]["largest at"] == "a"
    found = headline_intervals("taught", rows, extra)
    assert "b" not in found["probability"]["worst probe"] and "a" in found["probability"]["worst probe"]
    assert found["probability"]["residual vs retain at the worst attack"][0] == pytest.approx(0.0)
    assert Row.from_json(rows["b"].to_json()).V.accuracy != Row.from_json(rows["b"].to_json()).V.accuracy  # NaN


def test_without_kept_sets_an_attack_is_not_judged_by_v_alone(people):
    """V may sit far below chance after unlearning (an anti-memory): alone it judges no model."""
    from cir.attacks.grids import below_chance

    held_out = people[:40]
    row = _row("attack", [0] * 40, [0.01] * 40, "a", sets={"taught": [0] * 40})
    assert below_chance(row, {}, held_out) is None
    kept = people[40:80]
    row = _row("attack", [0] * 40, [0.01] * 40, "a", sets={"taught": [0] * 40, "kept": [0] * 40})
    assert "far below" in below_chance(row, {"kept": kept}, held_out)
