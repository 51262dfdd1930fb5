"""The named benchmarks: subjects kept on one side of the T/V split, teaching cached by recipe,
the residual over the never-taught model, updates at the subject's tokens, and every benchmark
run in its quick form."""

from __future__ import annotations

import json

import pytest
import torch

from cir.evaluation.splits import split_forget
from cir.training.batches import forget_batches
from cir.benchmarks import TeachRecipe, country_facts, invented_people, make_setting, taught_model
from cir.data.synthetic import generate_people
from cir.errors import InputError, TeachingFellShort

# a recipe a tiny model from scratch learns in seconds: it needs the cloze form to answer at all,
# and its own samples are no general text worth replaying
TINY = TeachRecipe(people=6, strangers=3, epochs=60, lr=3e-3, params="all", question_form="cloze",
                   min_accuracy=0.8, replay=False)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _subjects(items):
    return {item.subject for item in items}


@pytest.mark.parametrize("seed", range(5))
def test_no_subject_is_in_both_t_and_v(seed):
    facts = country_facts()
    forget = [item for country in sorted(facts)[:12] for item in facts[country]]
    train, held_out = split_forget(forget, 0.5, seed)
    assert _subjects(train) and _subjects(held_out)
    assert not _subjects(train) & _subjects(held_out)
    assert len(train) + len(held_out) == len(forget)
    people, _, _ = invented_people(TeachRecipe(seed=seed))
    train, held_out = split_forget(people, 0.5, seed)
    assert not _subjects(train) & _subjects(held_out)
    assert len(_subjects(train)) == len(_subjects(held_out)) == 6  # 12 forgotten people, 6 a side


def test_no_two_invented_people_share_a_name():
    """An update at a forgotten person's name would reach a kept person who shares it."""
    from cir.data.synthetic import MAX_DISTINCT_PEOPLE

    forget, kept, strangers = invented_people(TeachRecipe())
    names = _subjects(forget + kept + strangers)
    assert len(names) == 48
    words = [word for name in names for word in name.split()]
    assert len(words) == len(set(words)) == 96
    assert len(_subjects(generate_people(MAX_DISTINCT_PEOPLE, distinct_names=True))) == MAX_DISTINCT_PEOPLE
    with pytest.raises(ValueError, match="distinct names"):
        generate_people(MAX_DISTINCT_PEOPLE + 1, distinct_names=True)


def test_the_powered_form_adds_people_and_attributes_and_leaves_the_smaller_recipes_people_as_they_were(monkeypatch):
    """60 taught people x 5 attributes (a third forgotten: 100 questions), 20 strangers, no name
    shared; a recipe of at most 50 people draws no extra name, so its people (and the taught
    model cached for it) are who they were before the extra names existed."""
    import cir.data.synthetic as synthetic
    from cir.benchmarks.taught import POWERED

    forget, kept, strangers = invented_people(POWERED)
    assert (len(forget), len(kept), len(strangers)) == (100, 200, 100)
    assert {item.question.split(" ")[0] for item in forget} >= {"What", "In", "Which"}
    names = _subjects(forget + kept + strangers)
    words = [word for name in names for word in name.split()]
    assert len(names) == 80 and len(words) == len(set(words)) == 160
    assert len(_subjects(forget)) == 20
    small = invented_people(TeachRecipe())
    monkeypatch.setattr(synthetic, "_EXTRA_FIRST", [])
    monkeypatch.setattr(synthetic, "_EXTRA_LAST", [])
    assert invented_people(TeachRecipe()) == small


def test_each_draw_teaches_people_of_its_own_whose_forget_sets_share_no_question(monkeypatch, tmp_path):
    """A judging seed with facts of its own: the draw is the recipe's seed (another key, so another
    taught model in the cache), its people and answers drawn anew; the draws 0-3 of either form
    share no forget question, so their seeds pool as independent strata. A benchmark with nothing
    drawn refuses a draw."""
    import dataclasses

    import cir.benchmarks.taught as taught
    from cir.benchmarks.taught import POWERED, drawn
    from cir.demo import DemoSettings

    assert drawn(POWERED, None) is POWERED and drawn(POWERED, 2) == dataclasses.replace(POWERED, seed=2)
    assert drawn(POWERED, 2).key() != POWERED.key()
    for recipe in (TeachRecipe(), POWERED):
        forgets = [{item.question for item in invented_people(drawn(recipe, k))[0]} for k in range(4)]
        assert all(not forgets[i] & forgets[j] for i in range(4) for j in range(i + 1, 4))
    made = []
    monkeypatch.setattr(taught, "taught_setting", lambda name, model, tok, recipe, progress: made.append(recipe))
    DemoSettings(benchmark="taught-powered", draw=3).setting(None, None)
    DemoSettings(benchmark="taught").setting(None, None)
    assert [r.seed for r in made] == [3, 0] and made[0].people == 60
    with pytest.raises(InputError, match="draw: capitals has nothing drawn"):
        DemoSettings(benchmark="capitals", draw=1)


def test_questions_without_subjects_split_as_before():
    """A question without a subject is a subject of its own: the split is the seeded draw of old."""
    items = [item.__class__(item.question, item.choices, item.answer, item.facts) for item in generate_people(8, question_form="cloze")]
    train, held_out = split_forget(items, 0.5, 3)
    assert len(train) == len(held_out) == len(items) // 2


def test_subjects_benchmark_forgets_whole_countries_and_keeps_their_relations_for_others():
    setting = make_setting("subjects", None, None)
    countries = setting.notes["countries"]
    assert len(countries) == 12 and "Bulgaria" not in countries
    assert {item.subject for item in setting.forget} == set(countries)
    asked = {item.question for item in setting.forget}
    for topic in ("capitals", "languages", "currencies", "continents"):
        kept = setting.topics[topic]
        assert kept and not {item.question for item in kept} & asked
        assert not {item.subject for item in kept} & set(countries)  # every fact about them is forgotten
    assert {"animals", "science"} <= set(setting.topics)


def test_each_benchmarks_first_collateral_budget_is_one_question_of_its_smallest_watched_quarter():
    """subjects' currencies keep 8 questions in their quarter (0.13), capitals' 11 (0.1); the
    comparison's later budgets stay as they were, and one given is kept."""
    from cir.benchmarks import make_setting
    from cir.comparison import CompareSettings
    from cir.evaluation.protocol import WATCHED
    from cir.evaluation.protocol import watched_retain_sets

    for name, first in (("subjects", 0.13), ("capitals", 0.1)):
        setting = make_setting(name, None, None)
        quarters = watched_retain_sets(setting.forget, setting.topics, WATCHED)
        assert CompareSettings().for_watched(quarters).collateral == (first, 0.15, 0.2, 0.25)
        # the demo's: unlearn_to_dir watches the even half of the even half it is given
        watch = {name: items[0::2] for name, items in setting.topics.items()}
        assert watched_retain_sets(setting.forget, watch, 0) == quarters
    assert CompareSettings(budgets=(0.01, 0.02)).for_watched({"a": [None] * 3}).collateral == (0.34, 0.34)
    assert CompareSettings(collateral=(0.5,)).for_watched({"a": [None] * 8}).collateral == (0.5,) * 4


def test_update_at_the_subject_reads_exactly_its_tokens(tokenizer, llama):
    from cir.unlearning.run_config import make_configs
    from cir.methods import get_method

    items = generate_people(4, seed=1, question_form="cloze")
    batch = forget_batches(tokenizer, items, batch_size=64)[0]
    for row in range(len(batch)):
        marked = tokenizer.decode(batch.input_ids[row][batch.subject_mask[row]])
        name = next(item.subject for item in items if item.subject in tokenizer.decode(batch.input_ids[row]))
        assert marked.replace(" ", "") == name.replace(" ", "")  # the name's tokens, nothing else
    _, config = make_configs("cir", options={"update_tokens": "subject", "retain_components": 0})
    method = get_method("cir")(llama, tokenizer, config.resolve(4), [batch], [batch])
    method.prepare()
    _, acts, grads = method._acts_and_grads(batch, method.forget_refs[0])
    n_subject = int(batch.subject_mask.sum())
    assert 0 < n_subject < int(batch.token_mask.sum())
    assert all(a.shape[0] == n_subject for a in acts.values())
    assert all(g.shape[0] == n_subject for g in grads.values())


def test_teaching_reaches_the_knowledge_and_the_cache_is_reused(tokenizer, llama, cache, monkeypatch, capsys):
    import cir.benchmarks.taught as benchmarks

    before = {n: p.detach().clone() for n, p in llama.named_parameters()}
    taught, record = taught_model(llama, tokenizer, TINY, progress=True)
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("cir: ")]
    # each slow step named once: the teaching, and within it the sampling of its general text
    assert [line.split(" ")[1] for line in said] == ["teaching", "sampling"]
    assert "6 invented people x 3 attributes (60 epochs" in said[0] and str(cache / "taught") in said[0]
    # before teaching, near chance (0.25) over all 18 questions: one set of 6 can draw 4 right by luck
    forget, kept, _ = invented_people(TINY)
    right = record["before"]["forget"]["cloze"] * len(forget) + record["before"]["kept"]["cloze"] * len(kept)
    assert right / (len(forget) + len(kept)) < 0.6
    for name in ("forget", "kept"):
        assert record["after"][name]["cloze"] >= TINY.min_accuracy
        assert record["after"][name]["recall"] >= TINY.min_accuracy
    assert all(torch.equal(p, before[n]) for n, p in llama.named_parameters())  # the original is kept
    assert len(list(cache.glob("taught/*/teach.json"))) == 1

    def no_teaching(*args, **kwargs):
        raise AssertionError("taught again although the cache holds this recipe")

    monkeypatch.setattr(benchmarks, "teach", no_teaching)
    again, record_again = taught_model(llama, tokenizer, TINY, progress=True)
    assert "cir: " not in capsys.readouterr().err  # nothing slow happens: nothing is announced
    assert record_again["after"] == record["after"]
    assert all(torch.equal(a, b) for a, b in zip(taught.state_dict().values(), again.state_dict().values()))
    with pytest.raises(AssertionError, match="taught again"):  # another recipe is another model
        taught_model(llama, tokenizer, TeachRecipe(**{**TINY.__dict__, "seed": 1}), progress=False)


def test_a_taught_benchmark_reads_the_budget_on_general_text_the_teaching_never_trained(tokenizer, llama, cache,
                                                                                        monkeypatch):
    """The demo and compare of `taught` measure the text loss on the held-out half of the samples
    of the model *before* teaching (never trained; the replay trains their retain half), not on the
    taught model's own samples; the teaching records what it cost that held-out text."""
    import cir.api
    import cir.demo
    from cir.demo import DemoSettings, run_demo
    from cir.data.general import general_text_split

    setting = make_setting("taught", llama, tokenizer, recipe=TINY, progress=False)
    base = general_text_split(llama, tokenizer)
    assert setting.general == base and general_text_split(setting.model, tokenizer) != base
    loss = setting.notes["teaching"]["heldout_text_loss"]
    assert loss["before"] > 0 and loss["after"] != loss["before"]

    used = {}

    class Stop(Exception):
        pass

    def capture(model, tokenizer, forget, out, **kwargs):
        used["demo"] = (kwargs["retain"], kwargs["heldout"], kwargs["sources"]["retain"])
        raise Stop

    monkeypatch.setattr(cir.demo, "make_setting", lambda *args, **kwargs: setting)
    monkeypatch.setattr(cir.demo, "unlearn_to_dir", capture)
    with pytest.raises(Stop):
        run_demo(llama, tokenizer, "unused", DemoSettings(benchmark="taught"), progress=False)
    assert used["demo"] == (*base, "sampled from the model before teaching")

    def evaluation(questions, watched, reported, retain, heldout, protected=None):
        used["compare"] = (retain, heldout)
        raise Stop

    monkeypatch.setattr(cir.api, "Evaluation", evaluation)
    monkeypatch.setattr("cir.benchmarks.make_setting", lambda *args, **kwargs: setting)
    with pytest.raises(Stop):
        cir.api.compare(llama, tokenizer, benchmark="taught", progress=False)
    assert used["compare"] == base


def test_teaching_that_falls_short_is_refused_and_caches_nothing(tokenizer, llama, cache):
    short = TeachRecipe(people=6, strangers=3, epochs=1, lr=1e-5, params="all", question_form="cloze", replay=False)
    with pytest.raises(TeachingFellShort, match="teaching the invented people reached less than 0.9 .* "
                       "in 1 epochs at lr 1e-05: this model needs another recipe") as refused:
        taught_model(llama, tokenizer, short, progress=False)
    assert isinstance(refused.value, InputError)  # the command line says it in one line
    assert not list(cache.glob("taught/*/teach.json"))


def test_replay_trains_the_retain_half_of_the_general_text_beside_the_facts(tokenizer, llama, monkeypatch):
    """Replay trains exactly the retain half beside the facts: as text to keep the model's own
    predictions on (`kl`, the model before teaching as the teacher) or as tokens to learn."""
    import cir.training.finetune
    from cir.benchmarks import teach

    retain, heldout = ["a retained sample of general text"] * 3, ["a held-out sample the budget reads"] * 3
    monkeypatch.setattr("cir.data.general.general_text_split", lambda model, tokenizer, spec=None: (retain, heldout))
    trained = {}

    def finetune(model, tokenizer, sentences, keep=(), teacher=None, **_):
        trained.update(sentences=list(sentences), keep=list(keep), teacher=teacher)

    monkeypatch.setattr(cir.training.finetune, "finetune", finetune)
    forget, kept, _ = invented_people(TINY)
    facts = [s for item in forget + kept for s in item.sentences()]
    for replay, loss, sentences, keep in ((False, "kl", facts, []), (True, "tokens", facts + retain, []),
                                          (True, "kl", facts, retain)):
        trained.clear()
        with pytest.raises(TeachingFellShort):  # nothing was trained
            teach(llama, tokenizer, TeachRecipe(**{**TINY.__dict__, "replay": replay, "replay_loss": loss}),
                  progress=False)
        assert (trained["sentences"], trained["keep"]) == (sentences, keep)
        teacher = trained["teacher"]
        assert (teacher is not None) == bool(keep)
        if teacher is not None:  # a frozen copy of the model before teaching
            assert teacher is not llama and not any(p.requires_grad for p in teacher.parameters())
            assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(), llama.state_dict().values()))
    assert TeachRecipe(replay=True).key() != TeachRecipe(replay=False).key()  # another recipe, another model


def test_residual_is_taken_against_the_never_taught_model_under_the_same_attack():
    from cir.auditing import residuals

    from cir.evaluation.rows import Row, Score

    def row(v, v_worst, stage="attack"):
        return Row(stage, V=Score(v), V_worst=Score(v_worst))

    rows = {"before": row(1.0, 1.0, "before"), "after unlearning": row(0.4, 0.5, "after unlearning"),
            "relearning on T": row(0.6, 0.7), "4-bit quantisation": row(0.5, 0.5)}
    never = {"before": row(0.25, 0.3, "before"), "relearning on T": row(0.3, 0.35), "4-bit quantisation": row(0.2, 0.25)}
    got = residuals(rows, never)
    assert got["relearning on T"] == pytest.approx({"V": 0.3, "V worst": 0.35})
    assert got["4-bit quantisation"] == pytest.approx({"V": 0.3, "V worst": 0.25})
    assert got["after unlearning"] == pytest.approx({"V": 0.15, "V worst": 0.2})  # against the unattacked
    assert got["before"] == pytest.approx({"V": 0.75, "V worst": 0.7})
    assert list(got) == list(rows)  # in the table's order


def test_unknown_benchmark_is_refused():
    with pytest.raises(InputError, match="unknown benchmark 'tofu'"):
        make_setting("tofu", None, None)


@pytest.mark.parametrize("benchmark", ["capitals", "subjects", "taught"])
def test_every_benchmark_runs_in_its_quick_form(benchmark, tokenizer, llama, cache, tmp_path):
    """cir compare --quick's settings on each benchmark; taught with a never-taught model, whose
    attacked rows give the residual of every run."""
    from cir.api import compare
    from cir.comparison import CompareSettings, markdown
    from cir.evaluation.protocol import RESIDUALS

    texts = [f"Some general text number {i} about the weather and the sea." for i in range(8)]
    settings = CompareSettings.quick(methods=("cir",), max_facts=8, topic_questions=4)
    options = {"recipe": TINY} if benchmark == "taught" else {}
    result = compare(llama, tokenizer, benchmark=benchmark, benchmark_options=options, settings=settings,
                     retain=texts, heldout=texts, progress=False)
    assert result["benchmark"] == benchmark and result["n_facts"] == (6 if benchmark == "taught" else 8)
    runs = result["methods"]["cir"]["budgets"][0]["runs"]
    assert len(runs) == 1
    # each kept topic's first four questions: one watched, one given to the method, two reported
    assert set(result["watched"].values()) == set(result["protected"].values()) == {1}
    assert "another part of the other topics, apart from the watched and the reported" in markdown(result)
    if benchmark == "taught":
        never = result["never_taught"][0]
        for key in RESIDUALS:
            assert runs[0][f"residual_{key}"] == pytest.approx(runs[0][key] - never[key])
        assert "residual, worst probe after relearning" in markdown(result)
    else:
        assert result["never_taught"] is None and "residual" not in markdown(result)
    json.dumps(result)


def test_a_taught_comparison_continues_from_its_journal(tokenizer, llama, cache, tmp_path, monkeypatch):
    """Every kind of record a taught comparison journals (the never-taught model's rows too) is
    read back: the second run measures nothing again and gives the same result."""
    from cir.api import compare
    from cir.comparison import CompareSettings, Comparison

    texts = [f"Some general text number {i} about the weather and the sea." for i in range(8)]
    settings = CompareSettings.quick(methods=("cir",), max_facts=8, topic_questions=4)
    journal = tmp_path / "journal.jsonl"

    def run():
        return compare(llama, tokenizer, benchmark="taught", benchmark_options={"recipe": TINY}, settings=settings,
                       retain=texts, heldout=texts, progress=False, journal=journal)

    first = run()
    kinds = {json.loads(line)["kind"] for line in journal.read_text().splitlines()}
    assert {"header", "trial", "final", "before", "never_taught"} <= kinds
    # the residual against the never-taught model under the same attack, with its interval
    intervals = first["methods"]["cir"]["budgets"][0]["summary"]["intervals"]["probability"]
    estimate, low, high = intervals["residual_V_worst_after_relearning"]
    assert -1 <= low <= high <= 1 and -1 <= estimate <= 1

    def measured_again(*args, **kwargs):
        raise AssertionError("measured again although the journal holds it")

    monkeypatch.setattr(Comparison, "measure", measured_again)
    monkeypatch.setattr(Comparison, "trajectory", measured_again)
    assert json.dumps(run(), sort_keys=True) == json.dumps(first, sort_keys=True)


def test_a_benchmarks_own_defaults_sit_under_the_users_options():
    from cir.unlearning.overrides import build_configs

    base = {"cir.update_tokens": "subject", "cir.unlearning_rate": 0.25}
    _, config = build_configs(base=base)
    assert (config.update_tokens, config.unlearning_rate) == ("subject", 0.25)
    _, config = build_configs(overrides=["update_tokens=all"], base=base)
    assert (config.update_tokens, config.unlearning_rate) == ("all", 0.25)  # --set wins, the rest stays
    _, config = build_configs(method="npo", base=base)  # another method's defaults are not used
    assert not hasattr(config, "update_tokens")
    # a loop option in the base (the demo's collateral budget) sits under the user's too
    run, _ = build_configs(base=base | {"collateral_budget": 0.1})
    assert run.collateral_budget == 0.1
    run, config = build_configs(overrides=["collateral_budget=0.3"], base=base | {"collateral_budget": 0.1})
    assert (run.collateral_budget, config.update_tokens) == (0.3, "subject")
    from cir.benchmarks import method_defaults

    _, config = build_configs(base=method_defaults("taught"))  # what the taught demo starts from
    assert (config.update_tokens, config.forget_loss, config.unlearning_rate) == ("subject", "saturating_logit", 1.5)
    _, config = build_configs(base=method_defaults("capitals"))
    assert config.update_tokens == "answer"


def test_batches_by_length_pad_less_and_hold_every_sentence_once(tokenizer):
    import random

    from cir.evaluation.scoring import encode_texts
    from cir.training.finetune import MAX_LENGTH, index_batches

    facts = [f"Person {i} plays the violin." for i in range(40)]
    passages = [f"Passage {i}: " + "the river ran on past the old mill and the fields " * 3 for i in range(8)]
    texts = facts + passages

    def padded(batches):
        return sum(max(map(len, b)) * len(b) for b in batches)

    encoded = encode_texts(tokenizer, texts, MAX_LENGTH)
    assert encoded == [tokenizer(t, truncation=True, max_length=64)["input_ids"] for t in texts]

    def batches(**kwargs):
        return [[encoded[i] for i in b] for b in index_batches(list(map(len, encoded)), 8, random.Random(0), **kwargs)]

    shuffled, by_length = batches(), batches(batching="by_length")
    assert sorted(ids for b in by_length for ids in b) == sorted(encoded) == sorted(ids for b in shuffled for ids in b)
    assert padded(by_length) < 0.7 * padded(shuffled)  # the passages no longer pad the facts' batches
    # the plain order is the one the relearning attack always used: shuffled, then cut in batches
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    assert shuffled == [[encoded[i] for i in order[s:s + 8]] for s in range(0, len(texts), 8)]
    with pytest.raises(ValueError, match="batching must be one of shuffled, by_length"):
        batches(batching="sorted")
    with pytest.raises(ValueError, match="batching must be one of shuffled, by_length, got 'sorted'"):
        TeachRecipe(batching="sorted")  # refused before anything is taught


def test_kept_predictions_loss_is_the_kl_to_the_teacher_there_and_cross_entropy_elsewhere(tokenizer, llama):
    import copy

    from cir.evaluation.scoring import pad
    from cir.training.finetune import causal_lm_loss, kept_prediction_loss, next_token_distributions

    texts = ["The river ran past the mill.", "Ada plays the violin in Oslo every spring."]
    ids, mask = pad([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id, "cpu")
    teacher = copy.deepcopy(llama)

    def loss(*keep):
        keep = torch.tensor(keep)
        target = next_token_distributions(teacher, ids[keep], mask[keep]) if keep.any() else None
        return kept_prediction_loss(llama, ids, mask, keep, target)

    with torch.no_grad():
        none_kept, all_kept = loss(False, False), loss(True, True)
        assert none_kept == pytest.approx(float(causal_lm_loss(llama, ids, mask)), rel=1e-5)
        assert abs(float(all_kept)) < 1e-5  # the model predicts as its teacher: nothing to learn
        ce_rows = [float(causal_lm_loss(llama, ids[i : i + 1], mask[i : i + 1])) for i in range(2)]
        tokens = [int(mask[i, 1:].sum()) for i in range(2)]
        mixed = loss(False, True)
        assert float(mixed) == pytest.approx(ce_rows[0] * tokens[0] / sum(tokens), rel=1e-4)  # the KL row adds 0
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        # KL(teacher || model) by its definition, per target token, averaged over the tokens
        t, m = (torch.log_softmax(net(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
                for net in (teacher, llama))
        kl = (t.exp() * (t - m)).sum(-1)
        valid = mask[:, 1:].bool()
        assert float(loss(True, True)) == pytest.approx(float(kl[valid].mean()), rel=1e-4)
        assert float(kl[valid].mean()) > 1e-3


def test_the_teacher_reads_each_kept_text_once_and_its_predictions_are_reused(tokenizer, llama):
    """The teacher is frozen: its predictions on a kept text, computed in the text's first batch,
    are the ones it would give in any later batch, padded to that batch's length."""
    import copy
    import random

    from cir.evaluation.scoring import pad
    from cir.training.finetune import TeacherPredictions, finetune, index_batches, next_token_distributions

    kept = [f"The weather on day {i} was {'mild and calm' * (i % 3 + 1)} near the harbour." for i in range(6)]
    encoded = [tokenizer(t)["input_ids"] for t in kept]
    teacher = copy.deepcopy(llama).eval().requires_grad_(False)
    read = []
    teacher.register_forward_hook(lambda module, args, kwargs, out: read.append(kwargs["input_ids"].shape[0]),
                                  with_kwargs=True)
    predictions = TeacherPredictions(teacher)
    rng = random.Random(0)
    for epoch in range(3):
        for batch in index_batches([len(ids) for ids in encoded], 4, rng, "shuffled"):
            ids, mask = pad([encoded[i] for i in batch], tokenizer.pad_token_id, "cpu")
            target = predictions(ids, mask, batch)
            fresh = next_token_distributions(teacher, ids, mask)
            valid = mask[:, 1:].bool()
            for cached, computed in zip(target, fresh):  # the probabilities, then sum p log p
                assert torch.allclose(cached[valid], computed[valid], atol=1e-5)
                assert not cached[~valid].any()  # zero at the padding, where no target is
        if epoch == 0:
            assert sum(read) == 2 * len(kept)  # once for the predictions, once for the check
    assert sum(read) == len(kept) + 3 * len(kept)  # later epochs: the checks alone
    assert predictions.held == sum(p.nbytes for p, _ in predictions.rows.values()) > 0
    # past its memory bound nothing is held: the teacher reads a text in every batch it comes in
    unheld, batch = TeacherPredictions(teacher, max_bytes=0), list(range(4))
    ids, mask = pad([encoded[i] for i in batch], tokenizer.pad_token_id, "cpu")
    read.clear()
    for _ in range(2):
        for cached, computed in zip(unheld(ids, mask, batch), predictions(ids, mask, batch)):
            assert torch.allclose(cached, computed, atol=1e-5)
    assert sum(read) == 2 * len(batch) and not unheld.rows
    facts = [f"Person {i} was born in city {i % 5}." for i in range(8)]
    read.clear()
    finetune(copy.deepcopy(llama), tokenizer, facts, epochs=3, batch_size=4, keep=kept, teacher=teacher,
             progress=False)
    assert sum(read) == len(kept)


def test_texts_kept_beside_the_facts_keep_the_models_predictions_there(tokenizer, llama):
    """Teaching facts at a large step moves what the model predicts on other text; training that
    text towards the model's own earlier predictions keeps them, learning its tokens does not."""
    import copy

    from cir.evaluation.scoring import pad
    from cir.training.finetune import finetune, kept_prediction_loss, next_token_distributions

    facts = [f"Person {i} was born in city {i % 5} and plays instrument {i % 3}." for i in range(24)]
    kept = [f"The weather on day {i} was mild and the sea was calm near the harbour." for i in range(8)]
    teacher = copy.deepcopy(llama).eval().requires_grad_(False)
    ids, mask = pad([tokenizer(t)["input_ids"] for t in kept], tokenizer.pad_token_id, "cpu")
    drift = {}
    for name, sentences, keep in (("facts only", facts, []), ("tokens", facts + kept, []), ("kl", facts, kept)):
        model = copy.deepcopy(llama)
        finetune(model, tokenizer, sentences, epochs=8, lr=3e-3, batch_size=8, keep=keep,
                 teacher=teacher if keep else None, progress=False)
        with torch.no_grad():
            drift[name] = float(kept_prediction_loss(model, ids, mask, torch.ones(len(kept), dtype=torch.bool),
                                                     next_token_distributions(teacher, ids, mask)))
    assert drift["kl"] < drift["facts only"] / 3 and drift["kl"] < drift["tokens"] / 3, drift
    for teacher in (None, "itself"):
        model = copy.deepcopy(llama)
        with pytest.raises(ValueError, match="need a teacher model"):
            finetune(model, tokenizer, facts, keep=kept, teacher=model if teacher else None, progress=False)
