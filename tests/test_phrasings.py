"""Training texts and held-out probes: the banks of training phrasings never contain a way
the facts are asked; the probe battery and its worst probe; phrasings drawn per epoch."""

from __future__ import annotations

import re

import pytest
import torch

from cir.evaluation.probes import battery_prompts, evaluate_battery, recall_rows
from cir.training.batches import draw_phrasings, encode, forget_batches
from cir.data import builtin_topics, load_mcq
from cir.data.mcq import MCQ
from cir.evaluation.scoring import cloze_prompt, evaluate_prompts


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip().rstrip("?:. ").strip()


def held_out_texts(item: MCQ) -> list[str]:
    """Every way the item is asked: the evaluation question, its rewordings, its statement,
    and the battery's prompts with their framing."""
    prompts = [prompts[i] for indices, prompts in battery_prompts([item]).values() for i in range(len(indices))]
    return [item.question, *item.probes, *([item.statement] if item.statement else []), *prompts]


def test_builtin_topics_carry_banks_probes_and_statements():
    for topic in builtin_topics():
        for item in load_mcq(topic):
            assert len(item.facts) >= 10, (topic, item.question)
            assert len(item.probes) >= 2 and item.statement, (topic, item.question)
            assert all(item.answer_text.lower() in fact.lower() for fact in item.facts), (topic, item.question)


def test_no_probe_occurs_in_any_training_text_of_any_builtin_topic():
    items = [item for topic in builtin_topics() for item in load_mcq(topic)]
    training = "\n".join(normalise(sentence) for item in items for sentence in item.sentences())
    found = [(item.question, held) for item in items for held in held_out_texts(item)
             if normalise(held) in training]
    assert not found, found[:5]


def test_generic_templates_never_produce_a_probe():
    item = MCQ(question="Which river flows through Vienna?", choices=("Danube", "Rhine", "Seine"), answer=0)
    sentences = item.sentences()
    assert len(sentences) >= 5 and len(set(sentences)) == len(sentences)
    assert all("Danube" in s for s in sentences)
    for sentence in sentences:
        assert cloze_prompt(item.question) not in sentence
        for held in held_out_texts(item)[1:]:  # the bare question is part of a question-answer form
            assert normalise(held) not in normalise(sentence), (held, sentence)


def test_phrasings_are_drawn_per_seed_from_the_bank(people):
    items = people[:6]  # four training sentences each
    first = draw_phrasings(items, 2, seed=1)
    assert first == draw_phrasings(items, 2, seed=1)
    assert first != draw_phrasings(items, 2, seed=2)
    for item, drawn in zip(items, first):
        assert len(drawn) == 2 and set(drawn) <= set(item.sentences())
    assert draw_phrasings(items, 0, seed=1) == [item.sentences() for item in items]


def test_each_epoch_trains_on_its_own_draw(tokenizer, people):
    from cir.unlearning.loop import _forget_schedule
    from cir.unlearning.run_config import RunConfig

    run = RunConfig(max_epochs=3, phrasings=2, batch_size=8)
    batches, schedule = _forget_schedule(tokenizer, people[:8], run, 1)
    assert len(schedule) == 3 and sorted(i for epoch in schedule for i in epoch) == list(range(len(batches)))
    texts = [[tokenizer.decode(row[mask]) for i in epoch for row, mask in
              zip(batches[i].input_ids, batches[i].token_mask)] for epoch in schedule]
    assert all(len(t) == 16 for t in texts)  # 2 phrasings of each of the 8 facts
    assert texts[0] != texts[1]
    for every_time in (RunConfig(max_epochs=3, phrasings=0), RunConfig(max_epochs=3, phrasings=4)):
        _, none = _forget_schedule(tokenizer, people[:8], every_time, 1)
        assert none is None  # the whole bank (4 sentences each) every epoch: one set of batches


def test_context_precedes_each_fact_with_other_facts_and_marks_only_its_answer(tokenizer, people):
    items = people[:5]
    plain = forget_batches(tokenizer, items, batch_size=64, phrasings=2, seed=3)[0]
    primed = forget_batches(tokenizer, items, batch_size=64, phrasings=2, seed=3, context=2)[0]
    assert len(primed) == len(plain) == 10
    owners = [item for item in items for _ in range(2)]
    for row, item in enumerate(owners):
        text = tokenizer.decode(primed.input_ids[row][primed.token_mask[row]])
        own = tokenizer.decode(plain.input_ids[row][plain.token_mask[row]])
        assert text.endswith("\n" + own)  # the fact itself, uncut, after its context
        context = text[:-len(own) - 1]
        others = [s for other in items if other is not item for s in other.sentences()]
        assert any(context == f"{a}\n{b}" for a in others for b in others), context  # two other facts' sentences
        # only the fact's own answer is marked, as without context
        assert tokenizer.decode(primed.input_ids[row][primed.answer_mask[row]]) == \
            tokenizer.decode(plain.input_ids[row][plain.answer_mask[row]])


def test_battery_scores_every_probe_and_names_the_worst(taught, people):
    model, tokenizer = taught
    items = [MCQ(item.question, item.choices, item.answer, item.facts,
                 probes=(item.question.replace("What is", "Tell me"), "Whose answer is this?"),
                 statement=item.facts[0].rsplit(" ", 1)[0]) for item in people[:20]]
    result = evaluate_battery(model, tokenizer, items)
    probes = {"cloze", "qa", "reworded_1", "reworded_2", "statement", "kshot", "recall"}
    assert set(result.per_probe) == probes | {f"{name}, least likely" for name in probes}
    for name, (indices, prompts) in battery_prompts(items).items():
        alone = evaluate_prompts(model, tokenizer, [items[i] for i in indices], prompts)
        assert result.per_probe[name].accuracy == pytest.approx(alone.accuracy)
        # read the other way: the items whose right choice the model scores below every other
        assert result.per_probe[f"{name}, least likely"].accuracy == pytest.approx(sum(alone.lowest) / alone.n)
    recall = recall_rows(tokenizer, items)
    alone = evaluate_prompts(model, tokenizer, [items[i] for i in recall], [cloze_prompt(items[i].question) for i in recall],
                             first_token=[True] * len(recall))
    assert result.per_probe["recall"].n == len(recall) and result.per_probe["recall"].accuracy == pytest.approx(alone.accuracy)
    accuracies = {name: r.accuracy for name, r in result.per_probe.items()}
    assert result.worst_accuracy == max(accuracies.values()) and accuracies[result.worst] == result.worst_accuracy
    # the taught model was taught the statement's sentence and the cloze form: both near 1,
    # while the untaught wording "Whose answer is this?" carries no knowledge of the person
    assert accuracies["statement"] >= 0.8 and accuracies["cloze"] >= 0.8


def test_first_token_marks_only_the_answers_first_token(tokenizer):
    texts = ["The capital of Slovenia is Ljubljana.", "Ljubljana lies on the Ljubljanica river; it is the capital.",
             "General text with no answer."]
    answers = ["Ljubljana", "capital", None]
    every = encode(tokenizer, texts, answers)
    first = encode(tokenizer, texts, answers, first_token=True)
    for row in range(2):
        marked = every.answer_mask[row].nonzero()[:, 0].tolist()
        assert len(marked) >= 2  # the tiny tokenizer splits these answers
        assert first.answer_mask[row].nonzero()[:, 0].tolist() == marked[:1]
    assert torch.equal(first.answer_mask[2], every.answer_mask[2])  # no answer: every real token, as before
    assert torch.equal(first.input_ids, every.input_ids) and torch.equal(first.token_mask, every.token_mask)


def test_runs_with_first_token_answers_train_on_the_first_token_only(tokenizer):
    from cir.unlearning.loop import _forget_schedule
    from cir.unlearning.run_config import RunConfig

    items = [MCQ(f"Which town is the capital of {country}?", (city, "Zagreb"), 0)
             for country, city in [("Slovenia", "Ljubljana"), ("Iceland", "Reykjavik"), ("Ethiopia", "Addis Ababa")]]
    every, _ = _forget_schedule(tokenizer, items, RunConfig(phrasings=0), 1)
    first, _ = _forget_schedule(tokenizer, items, RunConfig(phrasings=0, answer_tokens="first"), 1)
    assert all(f.answer_mask.sum(1).le(1).all() for f in first)
    assert sum(int(b.answer_mask.sum()) for b in every) > sum(int(b.answer_mask.sum()) for b in first) > 0
    with pytest.raises(ValueError, match="answer_tokens"):
        RunConfig(answer_tokens="last")


def test_recall_asks_the_questions_whose_choices_begin_differently(tokenizer):
    def first(text):
        return tokenizer(" " + text, add_special_tokens=False)["input_ids"][0]

    pairs = [("Ljubljana", "Ljubljanica"), ("Paris", "Parisian")]
    assert all(first(a) == first(b) for a, b in pairs)  # the tiny tokenizer starts each pair alike
    items = [MCQ("Which city?", ["Ljubljana", "Ljubljanica", "Oslo", "Rome"], 0),
             MCQ("Which capital?", ["Oslo", "Rome", "Lima", "Kyiv"], 2),
             MCQ("Which word?", ["Paris", "Parisian", "Oslo", "Lima"], 1)]
    assert len({first(c) for c in items[1].choices}) == 4
    assert recall_rows(tokenizer, items) == [1]


def test_every_epoch_row_has_cloze_and_recall_accuracy(taught, people):
    """The loop's per-epoch forget accuracy in recall too, from the cloze prompts' own passes."""
    from cir import unlearn
    from cir.evaluation.probes import cloze_and_recall

    model, tokenizer = taught
    facts = people[:24]
    recall = recall_rows(tokenizer, facts)
    assert recall
    expected = evaluate_prompts(model, tokenizer, [facts[i] for i in recall],
                                [cloze_prompt(facts[i].question) for i in recall], first_token=[True] * len(recall))
    assert cloze_and_recall(model, tokenizer, facts)[1] == pytest.approx(expected.accuracy)
    result = unlearn(model, tokenizer, facts, max_epochs=1, watch={}, progress=False,
                     retain=[s for item in people[40:] for s in item.sentences()[:1]],
                     heldout=[s for item in people[60:] for s in item.sentences()[:1]])
    assert [set(row) >= {"forget_accuracy", "forget_recall"} for row in result.metrics] == [True, True]
    assert result.metrics[0]["forget_recall"] == pytest.approx(expected.accuracy)
    after = cloze_and_recall(model, tokenizer, facts)  # the kept weights' row
    kept = result.metrics[result.kept_epoch]
    assert (kept["forget_accuracy"], kept["forget_recall"]) == pytest.approx(after)


def test_a_model_that_avoids_the_right_answers_still_shows_them_in_the_worst_reading(taught, people, monkeypatch):
    """Every right choice scored lowest: 0 in every usual reading, 1 read the other way, and the
    worst reading says so (an answer avoided is an answer known)."""
    import torch

    import cir.evaluation.probes
    from cir.evaluation.scoring import _result

    model, tokenizer = taught
    items = people[:8]

    def avoiding(model, tokenizer, asked, prompts, first_token=None, **_):
        return _result([torch.tensor([-5.0 if c == item.answer else -1.0 - 0.1 * c for c in range(len(item.choices))])
                        for item in asked], asked)

    monkeypatch.setattr(cir.evaluation.probes, "evaluate_prompts", avoiding)
    result = evaluate_battery(model, tokenizer, items)
    assert all(r.accuracy == 0.0 for name, r in result.per_probe.items() if "least likely" not in name)
    assert result.worst == "cloze, least likely" and result.worst_accuracy == 1.0
