"""What keeps unlearning selective: the collateral budget, CIR's statistics from the
answer-predicting positions, and the retain-aware collapse (tiny models)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cir.training.batches import forget_batches
from cir.methods.collapse import common_basis
from cir.data.general import builtin_prompts
from cir.evaluation.scoring import evaluate_cloze
from cir.methods.cir import CIR, CIRConfig
from cir.unlearning.loop import run_unlearning
from cir.evaluation.protocol import watched_retain_sets
from cir.unlearning.run_config import RunConfig

TINY = dict(act_components=4, grad_components=4, unlearning_rate=0.3, forget_loss="neg_cross_entropy",
            update_tokens="all")


def split(people):
    return people[:20], people[20:]


def test_collateral_budget_stops_before_the_text_budget_would(taught_dir, people):
    """Without the collapse the same steps erase the kept people too (a large effect by
    construction): the text budget alone lets all six epochs through, the collateral budget
    stops the run and keeps an epoch whose kept facts are within it."""
    from cir.models import load_model

    forget, keep = split(people)
    results = {}
    for watched in (None, {"kept": keep}):
        model, tokenizer = load_model(str(taught_dir))
        run = RunConfig(max_epochs=6, budget=100.0, collateral_budget=0.1)
        results[watched is not None] = run_unlearning(
            model, tokenizer, forget, builtin_prompts(), builtin_prompts(), run,
            CIRConfig(**TINY | {"collapse": "none"}), progress=False, retain_sets=watched)
        if watched:
            kept_accuracy = evaluate_cloze(model, tokenizer, keep).accuracy
    assert results[False].stop_reason.startswith("max_epochs") and results[False].kept_epoch == 6
    watched = results[True]
    assert watched.stop_reason.startswith("budget: collateral") and watched.kept_epoch < 6
    original = watched.metrics[0]["retain_accuracy"]["kept"]
    assert watched.metrics[-1]["collateral"] > 0.1  # the epoch that stopped it
    assert original - kept_accuracy <= 0.1 + 1e-9  # the kept weights are within the budget
    assert "collateral" not in results[False].metrics[-1]


def test_watched_retain_sets_skip_what_is_being_forgotten(people):
    forget = people[:5]
    sets = {"same": people[:10], "other": people[10:30]}
    watched = watched_retain_sets(forget, sets, half=None)
    assert all(item not in forget for items in watched.values() for item in items)
    assert watched["same"] == people[5:10]
    # other people's facts stay even when they share an answer (two people born in Oslo) ...
    answers = {f.answer_text for f in forget}
    assert any(item.answer_text in answers for item in people[10:30]) and watched["other"] == people[10:30]
    # ... but a question that names no subject and restates a forget answer is left out
    anonymous = [dataclasses.replace(item, subject=None) for item in people[10:30]]
    assert watched_retain_sets(forget, {"other": anonymous}, half=None)["other"] == \
        [item for item in anonymous if item.answer_text not in answers]
    even = watched_retain_sets([], sets, half=0)
    odd = watched_retain_sets([], sets, half=1)
    assert even["other"] == people[10:30][0::2] and odd["other"] == people[10:30][1::2]


def test_answer_statistics_come_from_exactly_the_answer_predicting_positions(taught, people):
    model, tokenizer = taught
    batches = forget_batches(tokenizer, split(people)[0], batch_size=16)
    expected = {"all": sum(int(b.token_mask.sum()) for b in batches),
                "answer": sum(int((b.answer_mask[:, 1:] & b.token_mask[:, :-1]).sum()) for b in batches)}
    assert 0 < expected["answer"] < expected["all"]
    for rule, rows in expected.items():
        method = CIR(model, tokenizer, CIRConfig(**TINY | {"stats_tokens": rule}), batches, [])
        method.prepare()
        for stats in method.stats.values():
            assert stats.acts.count == rows and stats.grads.count == rows


def test_retain_aware_collapse_removes_the_retain_facts_directions(taught, people):
    model, tokenizer = taught
    forget, keep = split(people)
    batches = forget_batches(tokenizer, forget, batch_size=16)
    retain_facts = forget_batches(tokenizer, keep, batch_size=16)
    config = CIRConfig(**TINY | {"retain_components": 3})
    method = CIR(model, tokenizer, config, batches, [], retain_facts)
    method.prepare()
    _, updates = method.forget_gradients(0)
    plain = CIR(model, tokenizer, CIRConfig(**TINY), batches, [])
    plain.prepare()
    _, plain_updates = plain.forget_gradients(0)
    for name, update in updates.items():
        acts_basis = method.retain_bases[(name, "acts")]
        grads_basis = method.retain_bases[(name, "grads")]
        assert acts_basis.shape[0] == 4 and grads_basis.shape[0] == 4  # the mean and 3 components
        scale = update.norm()
        assert scale > 0
        # W' = sum_t g_t a_t^T with both sides collapsed: no part along the retain directions
        assert (update @ acts_basis.T).norm() <= 1e-4 * scale
        assert (grads_basis @ update).norm() <= 1e-4 * scale
        # while the plain CIR update does have such a part
        assert (plain_updates[name] @ acts_basis.T).norm() > 1e-2 * plain_updates[name].norm()


@pytest.mark.parametrize("tokens", ["answer", "all"])
def test_retain_bases_are_the_retain_facts_statistics(tokens, taught, people):
    """The retain basis is the common basis of the retain facts' `retain_tokens` rows (the
    answer-predicting ones, or all), taken from the original model (re-derived here from a CIR
    pass over those facts alone)."""
    model, tokenizer = taught
    forget, keep = split(people)
    retain_facts = forget_batches(tokenizer, keep, batch_size=16)
    method = CIR(model, tokenizer, CIRConfig(**TINY | {"retain_components": 2, "retain_tokens": tokens}),
                 forget_batches(tokenizer, forget, batch_size=16), [], retain_facts)
    method.prepare()
    alone = CIR(model, tokenizer, CIRConfig(**TINY | {"stats_tokens": tokens}), retain_facts, [])
    alone.prepare()  # statistics of the retain facts' rows
    bases = {}
    for name in alone.stats:
        expected = common_basis(alone.stats[name].acts, 2)
        got = bases[name] = method.retain_bases[(name, "acts")]
        # the same span: projecting one basis onto the other keeps it whole
        torch.testing.assert_close((got @ expected.T).norm(dim=1), torch.ones(got.shape[0]), atol=1e-4, rtol=1e-4)
    if tokens == "all":  # and not the answer rows' span, which the default reads
        answer = CIR(model, tokenizer, CIRConfig(**TINY | {"stats_tokens": "answer"}), retain_facts, [])
        answer.prepare()
        name = next(iter(answer.stats))
        other = common_basis(answer.stats[name].acts, 2)
        assert (bases[name] @ other.T).norm(dim=1).min() < 0.99


def test_saturating_logit_gradient_shrinks_as_the_true_logit_falls(monkeypatch):
    from cir.methods.losses import SaturatingLogit

    falls = torch.tensor([0.0, -2.0, -6.0])  # m - m0: not yet moved, fallen by 2, fallen by 6
    margins = torch.nn.Parameter(torch.tensor([1.0, 3.0, -1.5]))  # m
    reference = margins.detach() - falls  # m0
    monkeypatch.setattr(SaturatingLogit, "margins", staticmethod(lambda model, batch: margins))
    loss = SaturatingLogit(None)(None, None, reference)
    loss.backward()
    # d/dm mean softplus(m - m0 + 2) = sigmoid(m - m0 + 2) / 3
    expected = torch.tensor([0.880797, 0.5, 0.017986]) / 3
    torch.testing.assert_close(margins.grad, expected, atol=1e-6, rtol=1e-5)
    assert margins.grad[0] > margins.grad[1] > margins.grad[2]


def test_the_bounded_logit_stops_each_token_at_the_models_best_alternative(taught, people, monkeypatch):
    """A token still the most likely is pushed down (its margin over the best other token is the
    loss, and the step lowers it); one that another token already matches or beats adds nothing
    and takes no gradient: the answers are pushed to the level of an alternative, not below it."""
    from cir.methods.losses import BoundedLogit

    logits = torch.nn.Parameter(torch.tensor([[5.0, 1.0, 0.5], [1.0, 3.0, 0.0], [2.0, 2.0, -1.0]]))
    targets = torch.tensor([0, 0, 0])  # the first: top by 4; the second: beaten by 2; the third: tied
    monkeypatch.setattr(BoundedLogit, "answer_logits", staticmethod(lambda model, batch: (logits, targets)))
    loss = BoundedLogit(None)(None, None)
    monkeypatch.undo()
    loss.backward()
    assert float(loss) == pytest.approx(4.0 / 3)
    assert logits.grad[0, 0] > 0 and logits.grad[0, 1] < 0  # the true logit down, the best rival up
    assert not logits.grad[1:].any()
    model, tokenizer = taught  # on a model: a positive loss where it knows the answers, never below 0
    batch = forget_batches(tokenizer, people[:8], batch_size=32)[0]
    with torch.no_grad():
        assert float(BoundedLogit(model)(model, batch)) >= 0


def test_with_name_marks_the_names_continuations_beside_the_answer(tokenizer, people):
    """answer_tokens=with_name: the losses read the answer's tokens and each of the subject's
    tokens that follows another of its tokens (the name's later tokens), never its first."""
    from cir.training.batches import name_continuations

    plain = forget_batches(tokenizer, people[:4], batch_size=32)[0]
    named = forget_batches(tokenizer, people[:4], batch_size=32, with_name=True)[0]
    added = named.answer_mask & ~plain.answer_mask
    assert (named.answer_mask >= plain.answer_mask).all() and added.any()
    assert (added <= plain.subject_mask).all()  # only the name's tokens are added
    first = plain.subject_mask.clone()
    first[:, 1:] &= ~plain.subject_mask[:, :-1]  # each mention's first token
    assert not (named.answer_mask & first & ~plain.answer_mask).any()
    assert torch.equal(name_continuations(torch.tensor([[0, 1, 1, 1, 0, 1]], dtype=torch.bool)),
                       torch.tensor([[0, 0, 1, 1, 0, 0]], dtype=torch.bool))


def test_saturating_losses_start_at_their_reference(taught, people):
    """On the original model each loss sits at its known starting value: softplus(2) per token,
    and NPO's -(2/beta) log sigmoid(0) = 2 log 2 per sentence."""
    import math

    from cir.methods.losses import SaturatingLogit, SaturatingSequence

    model, tokenizer = taught
    batch = forget_batches(tokenizer, people[:8], batch_size=32)[0]
    for loss, start in ((SaturatingLogit(model), math.log1p(math.exp(2.0))), (SaturatingSequence(model), 2 * math.log(2))):
        with torch.no_grad():
            assert float(loss(model, batch, loss.reference(model, batch))) == pytest.approx(start, rel=1e-4)


def test_repselect_line_search_keeps_the_largest_step_within_the_budgets(taught_dir, people):
    from cir.methods.repselect import RepSelectConfig
    from cir.models import load_model

    model, tokenizer = load_model(str(taught_dir))
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    forget, keep = split(people)
    run = RunConfig(method="repselect", max_epochs=12, budget=100.0, collateral_budget=0.1)
    result = run_unlearning(model, tokenizer, forget, builtin_prompts(), builtin_prompts(), run,
                            RepSelectConfig(unlearning_rate=1.0, components=8), progress=False,
                            retain_sets={"kept": keep})
    assert result.stop_reason.startswith("budget: collateral"), result.stop_reason
    assert all(row["in_budget"] for row in result.metrics[: result.kept_epoch + 1])
    assert not result.metrics[-1]["in_budget"]
    assert result.kept_epoch >= 1  # at least one step fitted within the budgets
    # the kept weights are the original ones moved kept_epoch increments along one direction
    moved = {n: p.detach() - original[n] for n, p in model.named_parameters() if not torch.equal(p, original[n])}
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in moved.values()))
    assert float(norm) == pytest.approx(result.kept_epoch * 1.0, rel=1e-3)


def test_repselect_adversary_is_fitted_to_the_forget_set_and_dropped(taught, people):
    """The adapter lowers the forget sentences' loss while it is fitted; the direction is taken
    through the adapted model (so it differs from the plain one); afterwards no hook is left and
    the model computes what it computed before."""
    from cir.methods.repselect import RepSelect, RepSelectConfig

    model, tokenizer = taught
    forget, _ = split(people)
    batches = forget_batches(tokenizer, forget, batch_size=16)
    ids = batches[0].input_ids
    with torch.no_grad():
        logits_before = model(input_ids=ids).logits
    plain = RepSelect(model, tokenizer, RepSelectConfig(components=8), batches, [])
    plain.prepare()
    adversarial = RepSelect(model, tokenizer, RepSelectConfig(components=8, adversarial_epochs=3, adversarial_lr=1e-2),
                            batches, [])
    adversarial.prepare()
    losses = adversarial.adversarial_losses
    assert len(losses) == 3 and losses[-1] < losses[0]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, logits_before)  # adapter gone, weights untouched
    assert all(not module._forward_hooks for module in adversarial.modules.values())
    cosines = [torch.nn.functional.cosine_similarity(plain.direction[n].flatten(), adversarial.direction[n].flatten(), 0)
               for n in plain.direction if plain.direction[n].norm() > 0]
    assert cosines and min(cosines) < 0.999


def test_measurements_given_as_reference_replace_measuring_the_original(taught_dir, people):
    """A caller that already measured the original model (cir compare, once for all its runs)
    gets the same run as one that lets the loop measure it; a wrong reference shows up in every
    ratio, so the reference is what the loop used."""
    from cir.evaluation.scoring import text_loss
    from cir.models import load_model

    forget, keep = split(people)
    heldout = builtin_prompts()
    runs = {}
    for name in ("measured", "given", "wrong"):
        model, tokenizer = load_model(str(taught_dir))
        reference = None
        if name != "measured":
            loss = text_loss(model, tokenizer, heldout)
            reference = {"text_loss": loss * (2 if name == "wrong" else 1),
                         "retain_accuracy": {"kept": evaluate_cloze(model, tokenizer, keep).accuracy}}
        runs[name] = run_unlearning(model, tokenizer, forget, builtin_prompts(), heldout, RunConfig(max_epochs=2),
                                    CIRConfig(**TINY), progress=False, retain_sets={"kept": keep},
                                    reference=reference)
    for measured, given in zip(runs["measured"].metrics, runs["given"].metrics):
        assert measured["loss_ratio"] == pytest.approx(given["loss_ratio"], rel=1e-6)
        assert measured["retain_accuracy"] == given["retain_accuracy"]
    assert runs["wrong"].metrics[1]["loss_ratio"] == pytest.approx(runs["given"].metrics[1]["loss_ratio"] / 2, rel=1e-5)


def test_the_method_is_given_the_protected_facts_and_the_budget_watches_the_others(taught_dir, people, monkeypatch):
    """With `protect_sets` the method reads those facts' sentences only (none of the watched
    ones), and the collateral budget still measures the watched sets; without it, the watched."""
    from cir.models import load_model

    given = {}

    class Recording(CIR):
        def __init__(self, model, tokenizer, config, forget, retain, retain_facts=None):
            given["ids"] = [b.input_ids for b in retain_facts]
            super().__init__(model, tokenizer, config, forget, retain, retain_facts)

    monkeypatch.setattr("cir.unlearning.loop.get_method", lambda name: Recording)
    forget, keep = split(people)
    watched, protected = {"kept": keep[0::2]}, {"kept": keep[1::2]}
    run = RunConfig(max_epochs=1, budget=100.0, collateral_budget=1.0)
    for protect, shown in ((None, watched["kept"]), (protected, protected["kept"]), ({}, [])):
        model, tokenizer = load_model(str(taught_dir))
        result = run_unlearning(model, tokenizer, forget, builtin_prompts(), builtin_prompts(), run,
                                CIRConfig(**TINY), progress=False, retain_sets=watched, protect_sets=protect)
        expected = [b.input_ids for b in forget_batches(tokenizer, shown, run.batch_size, run.max_length,
                                                        phrasings=run.phrasings, seed=run.seed)] if shown else []
        assert len(given["ids"]) == len(expected) and all(torch.equal(a, b) for a, b in zip(given["ids"], expected))
        assert result.metrics[0]["retain_accuracy"] == {"kept": evaluate_cloze(load_model(str(taught_dir))[0],
                                                                              tokenizer, watched["kept"]).accuracy}
    # the two parts state different facts, so the method's input tells them apart
    assert not {s for item in protected["kept"] for s in item.sentences()} & \
        {s for item in watched["kept"] for s in item.sentences()}


@pytest.mark.parametrize("n", range(1, 120))
def test_one_question_lets_the_smallest_set_lose_one_question_and_not_two(n):
    """For every size, with the drops computed as the collateral budget computes them (the
    difference of two accuracies), from any starting count."""
    from cir.evaluation.budgets import one_question

    budget = one_question({"small": [None] * n, "large": [None] * (3 * n)})
    assert 0 < budget <= 1
    for correct in range(1, n + 1):
        assert correct / n - (correct - 1) / n <= budget
        if correct >= 2:
            assert correct / n - (correct - 2) / n > budget


def test_one_question_reads_round_figures_for_the_benchmarks_quarters():
    from cir.evaluation.budgets import one_question

    assert [one_question({"a": [None] * n}) for n in (8, 9, 11, 12, 18)] == [0.13, 0.12, 0.1, 0.09, 0.06]
    with pytest.raises(ValueError, match="non-empty"):
        one_question({})


def test_a_collateral_budget_of_none_is_one_question_of_the_smallest_watched_set(taught_dir, people, tmp_path):
    """Resolved before the run: the stop rule reads it and config.yaml records it."""
    import yaml

    from cir.api import unlearn_to_dir
    from cir.models import load_model

    forget, keep = split(people)
    model, tokenizer = load_model(str(taught_dir))
    watch = {"eight": keep[:16], "twelve": keep[16:40]}  # the even halves are watched: 8 and 12
    result = unlearn_to_dir(model, tokenizer, forget, tmp_path / "run", watch=watch, retain=builtin_prompts(),
                            heldout=builtin_prompts(), config=CIRConfig(**TINY | {"collapse": "none"}),
                            max_epochs=4, budget=100.0, collateral_budget=None, progress=False)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["collateral_budget"] == 0.13
    # the text budget cannot bind (100): each epoch is within budget exactly when its drop is
    assert all(row["in_budget"] == (row["collateral"] <= 0.13) for row in result.metrics)
    assert result.metrics[result.kept_epoch]["collateral"] <= 0.13
    if result.stop_reason.startswith("budget: collateral"):
        assert "> 0.13" in result.stop_reason and result.metrics[-1]["collateral"] > 0.13
