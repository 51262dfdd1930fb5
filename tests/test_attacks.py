"""Attacks that try to bring forgotten facts back, membership inference and `cir report`, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from cir.evaluation.probes import PROBE_FORMATS, probe_mcq
from cir.attacks import (auc, mia, quantize_model, quantize_tensor, relearn,
                         split_forget)
from cir.evaluation.probes import kshot_prompts
from cir.cli import build_parser, main
from cir.data.synthetic import ATTRIBUTES, generate_people, write_mcq
from cir.evaluation.scoring import pad, cloze_prompt, evaluate_mcq


def shallow_unlearn(model, tokenizer, items, lr=3e-2, max_steps=20, target=0.25):
    """Gradient ascent on the answers' log-likelihood, through the last MLP's output projection only."""
    weight = model.model.layers[-1].mlp.down_proj.weight
    for p in model.parameters():
        p.requires_grad_(p is weight)
    prompts = [tokenizer(cloze_prompt(item.question))["input_ids"] for item in items]
    answers = [tokenizer(" " + item.answer_text, add_special_tokens=False)["input_ids"] for item in items]
    ids, mask = pad([p + a for p, a in zip(prompts, answers)], tokenizer.pad_token_id, "cpu")
    labels = torch.full_like(ids, -100)
    for row, (p, a) in enumerate(zip(prompts, answers)):
        labels[row, len(p) : len(p) + len(a)] = torch.tensor(a)
    opt = torch.optim.Adam([weight], lr=lr)
    for _ in range(max_steps):
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        loss = -torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if evaluate_mcq(model, tokenizer, items).accuracy <= target:
            break
    for p in model.parameters():
        p.requires_grad_(True)


# ---------------------------------------------------------------- relearning
def test_relearning_exposes_shallow_unlearning(taught_dir, people):
    """Both directions of one split (train on T, read V; train on V, read T), averaged: a single
    half's recovery varies with the draw of the tiny model."""
    from cir.models import load_model

    forget = people[:40]
    halves = split_forget(forget, 0.5, seed=0)
    hidden, regained = [], []
    for train, held in (halves, halves[::-1]):
        model, tokenizer = load_model(str(taught_dir))
        assert evaluate_mcq(model, tokenizer, held).accuracy >= 0.8  # the facts were taught
        shallow_unlearn(model, tokenizer, forget, max_steps=60)
        result = relearn(model, tokenizer, train, held, epochs=6, lr=1e-3, params="mlp")
        assert len(result["per_epoch"]) == 6 and result["max_accuracy"] == max(result["per_epoch"])
        hidden.append(result["before"])
        regained.append(result["max_accuracy"] - result["before"])
    assert sum(hidden) / 2 <= 0.4  # unlearning hid the held-out facts ...
    assert sum(regained) / 2 >= 0.25  # ... and training on the other facts brings them back


def test_split_forget_is_seeded_and_disjoint(taught, people):
    model, tokenizer = taught
    t1, v1 = split_forget(people, 0.25, seed=3)
    t2, v2 = split_forget(people, 0.25, seed=3)
    assert (t1, v1) == (t2, v2) and len(t1) == 20 and len(v1) == 60 and not set(t1) & set(v1)
    assert split_forget(people, 0.25, seed=4) != (t1, v1)
    strangers = generate_people(8, seed=9, question_form="cloze")
    t, v = split_forget(people[:20] + strangers, 0.5, model=model, tokenizer=tokenizer, drop_wrong=True)
    assert evaluate_mcq(model, tokenizer, t + v).accuracy == 1.0


def test_lora_relearning_merges_back(taught, people):
    model, tokenizer = taught
    before = {n: p.clone() for n, p in model.named_parameters()}
    result = relearn(model, tokenizer, people[:10], people[10:20], epochs=1, lr=1e-3, params="lora")
    assert len(result["per_epoch"]) == 1
    after = dict(model.named_parameters())
    assert set(after) == set(before)  # adapters merged into plain weights
    assert any(not torch.equal(before[n], after[n]) for n in before)


# ---------------------------------------------------------------- quantisation
@pytest.mark.parametrize("bits", [8, 4])
def test_quantization_error_within_half_a_step(bits):
    torch.manual_seed(0)
    weight = torch.randn(48, 100) * torch.rand(48, 1)  # 100 columns: the last group is partial
    deq, scale = quantize_tensor(weight, bits, group_size=32)
    assert scale.shape == (48, 4)
    bound = scale.repeat_interleave(32, dim=1)[:, :100] / 2
    assert ((deq - weight).abs() <= bound * (1 + 1e-5) + 1e-8).all()
    levels = torch.round(deq.reshape(-1)[:32] / scale[0, 0])
    assert levels.abs().max() <= 2 ** (bits - 1) - 1


def test_8bit_keeps_an_intact_model_accurate(taught, people):
    model, tokenizer = taught
    linear = model.model.layers[0].mlp.up_proj.weight
    original = linear.clone()
    before = evaluate_mcq(model, tokenizer, people).accuracy
    stats = quantize_model(model, bits=8, group_size=64)
    assert not torch.equal(original, linear) and stats["weights"] > 0
    assert abs(evaluate_mcq(model, tokenizer, people).accuracy - before) <= 0.02


# ---------------------------------------------------------------- probes
def test_probe_formats(taught, people):
    model, tokenizer = taught
    prompts = kshot_prompts(people[:10], k=3, seed=0)
    for item, prompt in zip(people[:10], prompts):
        assert prompt.count("Question:") == 4 and prompt.endswith(cloze_prompt(item.question))
        assert prompt.count(item.question) == 1
    assert kshot_prompts(people[:10], k=3, seed=0) == prompts
    for fmt in PROBE_FORMATS:
        assert probe_mcq(model, tokenizer, people[:10], fmt).n == 10
    assert probe_mcq(model, tokenizer, people, "cloze").accuracy == evaluate_mcq(model, tokenizer, people).accuracy
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices["attack"]
    relearn_parser = next(a for a in choices._actions if a.dest == "attack").choices["relearn"]
    assert tuple(next(a for a in relearn_parser._actions if a.dest == "fmt").choices) == PROBE_FORMATS


# ---------------------------------------------------------------- membership inference
def test_auc_with_ties():
    assert auc([1, 2], [0, 1]) == pytest.approx(0.875)
    assert auc([3, 4], [1, 2]) == 1.0 and auc([1, 2], [3, 4]) == 0.0


def fresh_people(people, n, seed):
    names = {item.question.split(" of ")[-1] for item in people}
    return [i for i in generate_people(n, seed=seed, question_form="cloze") if not any(name.rstrip("?") in i.question for name in names)]


def test_mia_separates_memorised_from_fresh_facts(taught, people):
    from conftest import seeded

    model, tokenizer = taught
    # Two halves of one distribution: 100 unseen people each (every person's sentences in one
    # half, alternating), ~2,000 sentences a side. The AUC's spread across draws is a few
    # hundredths, so 0.5 +/- 0.1 holds by the sample size, not by the draw.
    fresh = fresh_people(people, 200, seed=seeded(123))
    per_person = len(ATTRIBUTES)  # generate_people gives each person's questions together
    groups = [fresh[k : k + per_person] for k in range(0, len(fresh), per_person)]
    halves = [[s for group in groups[k::2] for item in group for s in item.sentences()] for k in (0, 1)]
    same = mia(model, tokenizer, halves[0], halves[1])
    assert all(abs(v - 0.5) <= 0.1 for v in same["auc"].values()), same["auc"]
    memorised = mia(model, tokenizer, [s for item in people for s in item.sentences()], halves[0])
    assert all(v > 0.9 for v in memorised["auc"].values()), memorised["auc"]


# ---------------------------------------------------------------- CLI
@pytest.fixture
def fact_files(tmp_path, people):
    paths = {}
    for name, items in {"train": people[:10], "eval": people[10:20], "fresh": generate_people(4, seed=77, question_form="cloze")}.items():
        paths[name] = str(tmp_path / f"{name}.jsonl")
        write_mcq(items, paths[name])
    return paths


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_attack_commands_print_json(taught_dir, fact_files, tmp_path, capsys):
    model = str(taught_dir)
    assert main(["attack", "relearn", "--model", model, "--train", fact_files["train"], "--eval", fact_files["eval"],
                 "--epochs", "2", "--lr", "1e-3", "--optimizer", "sgd", "--params", "all", "--json"]) == 0
    result = last_json(capsys)
    assert len(result["per_epoch"]) == 2 and result["max_accuracy"] == max(result["per_epoch"])
    assert main(["attack", "quantize", "--model", model, "--bits", "4", "--group-size", "32", "--mcq",
                 fact_files["eval"], "--json"]) == 0
    result = last_json(capsys)
    assert set(result) >= {"model", "format", "mcq", "text"} and result["mcq"][fact_files["eval"]]["n"] == 10
    assert main(["mia", "--model", model, "--members", fact_files["train"], "--nonmembers", fact_files["fresh"],
                 "--json"]) == 0
    assert set(last_json(capsys)["auc"]) == {"loss", "zlib", "min_k"}


@pytest.mark.parametrize("argv, message", [
    (["attack", "relearn", "--train", "{train}", "--eval", "{missing}"], "no such file"),
    (["attack", "relearn", "--train", "{train}", "--eval", "{eval}", "--epochs", "0"],
     "--epochs must be an integer >= 1, got 0"),
    (["attack", "quantize", "--bits", "4", "--group-size", "0", "--mcq", "{eval}"], "--group-size must be > 0"),
    (["attack", "quantize", "--bits", "8", "--mcq", "{eval}", "--record", "{missing}"], "--record expects"),
    (["mia", "--members", "{missing}", "--nonmembers", "{eval}"], "no such file"),
    (["mia", "--members", "{train}", "--nonmembers", "{eval}", "--min-k", "2"], "--min-k must be"),
    (["report", "{empty}"], "not a run directory"),
])
def test_attack_commands_bad_input(argv, message, fact_files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    paths = fact_files | {"missing": str(tmp_path / "missing.jsonl"), "empty": str(tmp_path / "empty")}
    model = [] if argv[0] == "report" else ["--model", str(tmp_path)]  # never loaded: input is checked first
    code = main([arg.format(**paths) for arg in argv] + model)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("cir: error:") and message in err and len(err.splitlines()) == 1


def test_report_from_an_unlearning_run(taught_dir, fact_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["unlearn", "--model", str(taught_dir), "--forget", fact_files["eval"], "--out", str(run), "--quiet",
                 "--set", "max_epochs=2", "--set", "budget=10", "--set", "cir.act_components=4",
                 "--set", "grad_components=4"]) == 0
    assert main(["attack", "relearn", "--model", str(run), "--train", fact_files["train"], "--eval",
                 fact_files["eval"], "--epochs", "2", "--lr", "1e-3", "--record", str(run)]) == 0
    assert main(["attack", "quantize", "--model", str(run), "--bits", "8", "--mcq", fact_files["eval"],
                 "--record", str(run)]) == 0
    assert set(json.loads((run / "attacks.json").read_text())) == {"relearn:mlp", "quantize:8bit"}
    assert main(["report", str(run)]) == 0
    out = run / "robustness"
    for name in ["unlearning.png", "relearn.png", "topics.png", "report.md", "report.json"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "unlearning.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "relearn:mlp" in report and "after quantize:8bit" in report
    topics = json.loads((out / "report.json").read_text())["topics"]["run"]["eval"]
    assert set(topics) == {"before", "after unlearning", "after relearn:mlp", "after quantize:8bit"}
