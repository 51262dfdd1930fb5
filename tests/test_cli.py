"""`cir unlearn`, `cir teach`, `cir eval` end to end on tiny models."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from cir.cli import main
from cir.data.synthetic import write_mcq
from cir.outputs import stage


def digest(directory) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def forget_file(tmp_path, people):
    path = tmp_path / "forget.jsonl"
    write_mcq(people[:10], path)
    return str(path)


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))


def test_unlearn_writes_a_complete_run_directory(taught_dir, forget_file, tmp_path, tiny_cache, capsys, people):
    before = digest(taught_dir)
    out = tmp_path / "run"
    keep = tmp_path / "keep.jsonl"
    write_mcq(people[40:60], keep)
    protect = tmp_path / "protect.jsonl"
    write_mcq(people[20:30], protect)
    code = main(["unlearn", "--model", str(taught_dir), "--forget", forget_file, "--out", str(out), "--quiet",
                 "--retain-mcq", str(keep), "--protect-mcq", str(protect), "--set", "collateral_budget=1",
                 "--set", "max_epochs=2", "--set", "budget=10", "--set", "cir.act_components=4",
                 "--set", "grad_components=4", "--seed", "5"])
    assert code == 0
    assert digest(taught_dir) == before  # the input model is never modified
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["seed"] == 5 and config["max_epochs"] == 2 and config["cir"]["act_components"] == 4
    assert config["cir"]["train_layers"] == [0, 1]  # resolved, not None
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert {"forget_loss", "loss_ratio", "forget_accuracy", "seconds", "collateral"} <= set(rows[1])
    assert set(rows[1]["retain_accuracy"]) == {str(keep)}  # the even half of the kept people, watched
    assert 0 < config["sources"]["retain_mcq"][str(keep)] <= 10  # even half, less answers shared with forget facts
    assert config["sources"]["protect_mcq"] == {str(protect): 10}  # every question given to the method
    assert "Stopped by: max_epochs (2)" in (out / "report.md").read_text()
    summary = json.loads((out / "result.json").read_text())
    probes = summary["probes"]["after"]
    assert {"cloze", "qa", "statement", "kshot"} <= set(probes["probes"])
    assert probes["worst_accuracy"] == max(probes["probes"].values())
    assert probes["probes"]["cloze"] == pytest.approx(rows[-1]["forget_accuracy"])
    assert "Forget facts in every held-out probe" in (out / "report.md").read_text()
    # the written model loads anywhere, and through cir's own --model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert main(["eval", "--model", str(out), "--mcq", forget_file, "--json", "--probes"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mcq"][forget_file]["probes"] == probes
    assert result["mcq"][forget_file]["n"] == 10
    assert result["mcq"][forget_file]["accuracy"] == pytest.approx(rows[-1]["forget_accuracy"])
    assert not list(tmp_path.glob(".run.partial-*"))


def test_unlearn_says_what_it_did_in_words_and_names_the_facts_kept_that_lost_most(taught_dir, forget_file, people,
                                                                                  tmp_path, tiny_cache, capsys):
    out = tmp_path / "run"
    keep, other = tmp_path / "keep.jsonl", tmp_path / "other.jsonl"
    write_mcq(people[40:60], keep)
    write_mcq(people[60:80], other)
    code = main(["unlearn", "--model", str(taught_dir), "--forget", forget_file, "--out", str(out), "--retain-mcq",
                 str(keep), "--retain-mcq", str(other), "--set", "collateral_budget=1", "--set", "max_epochs=2",
                 "--set", "budget=10", "--set", "cir.act_components=4", "--set", "grad_components=4",
                 "--set", "cir.unlearning_rate=5"])
    stdout, stderr = capsys.readouterr()
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0] == "unlearning with cir ran all 2 epochs (max_epochs); kept epoch 2"
    assert lines[1].startswith("the forget facts' accuracy ") and lines[2].startswith("the forget facts' worst held-out")
    collateral = json.loads((out / "result.json").read_text())["collateral"]
    assert set(collateral["sets"]) == {str(keep), str(other)} and collateral["budget"] == 1.0
    worst = collateral["worst"]
    entry = collateral["sets"][worst]
    drops = {name: e["before"] - e["after"] for name, e in collateral["sets"].items()}
    assert drops[worst] == max(drops.values())
    assert entry["lost"] == round(entry["before"] * entry["questions"]) - round(entry["after"] * entry["questions"])
    assert lines[3] == (f"the facts kept: {worst} lost most, {entry['before']:.3f} -> {entry['after']:.3f} "
                        f"({entry['lost']} of {entry['questions']} questions lost; the collateral budget allows a drop "
                        "of 1; every watched set in result.json and report.md)")
    report = (out / "report.md").read_text()
    assert "## Facts kept (watched by the collateral budget)" in report
    assert f"| {keep} | {collateral['sets'][str(keep)]['before']:.3f} |" in report
    # a line naming each long step before it, and a bar over epoch 0's statistics
    steps = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("cir: ")]
    assert [line.split(":")[1].split()[0] for line in steps] == ["loading", "sampling", "reading", "epoch",
                                                                 "measuring", "writing"]
    assert "statistics (epoch 0)" in stderr


def test_unlearn_quiet_names_no_step(taught_dir, forget_file, people, tmp_path, tiny_cache, capsys):
    keep = tmp_path / "keep.jsonl"
    write_mcq(people[40:60], keep)
    assert main(["unlearn", "--model", str(taught_dir), "--forget", forget_file, "--out", str(tmp_path / "run"),
                 "--quiet", "--retain-mcq", str(keep), "--set", "max_epochs=1", "--set", "budget=10",
                 "--set", "collateral_budget=1", "--set", "cir.act_components=4", "--set", "grad_components=4"]) == 0
    stderr = capsys.readouterr().err
    assert "cir: " not in stderr and "statistics (epoch 0)" not in stderr


def test_interrupted_run_leaves_nothing(taught_dir, forget_file, tmp_path, tiny_cache, monkeypatch, capsys):
    from cir.methods.cir import CIR

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(CIR, "run_epoch", interrupt)
    out = tmp_path / "run"
    code = main(["unlearn", "--model", str(taught_dir), "--forget", forget_file, "--out", str(out), "--quiet"])
    assert code == 130 and "interrupted" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".run.partial-*"))


def test_teach_makes_a_model_learn_synthetic_facts(tmp_path, tokenizer, capsys):
    from conftest import tiny_llama

    from cir.models import load_model, save_model

    base = tmp_path / "base"
    save_model(tiny_llama(len(tokenizer), seed=2), tokenizer, base)
    assert main(["synth", "--people", "4", "--seed", "1", "--question-form", "cloze",
                 "--out", str(tmp_path / "people.jsonl")]) == 0
    out = tmp_path / "taught"
    assert main(["teach", "--model", str(base), "--facts", str(tmp_path / "people.jsonl"), "--epochs", "40",
                 "--lr", "3e-3", "--out", str(out)]) == 0
    record = json.loads((out / "teach.json").read_text())
    assert record["accuracy_before"] < 0.6 and record["accuracy_after"] >= 0.85
    load_model(str(out))


def test_teach_with_kept_text_keeps_the_models_predictions_there(tmp_path, tokenizer, capsys):
    """`--keep-text`: the text is trained towards the model's own predictions before teaching,
    so teaching moves them far less there than teaching the facts alone, and the facts are learnt."""
    import torch
    from conftest import tiny_llama

    from cir.evaluation.scoring import pad
    from cir.training.finetune import kept_prediction_loss, next_token_distributions
    from cir.models import load_model, save_model

    base = tmp_path / "base"
    save_model(tiny_llama(len(tokenizer), seed=2), tokenizer, base)
    facts = tmp_path / "people.jsonl"
    assert main(["synth", "--people", "4", "--seed", "1", "--question-form", "cloze", "--out", str(facts)]) == 0
    texts = [f"The weather on day {i} was mild and the sea was calm near the harbour." for i in range(8)]
    corpus = tmp_path / "general.txt"
    corpus.write_text("\n".join(texts) + "\n")
    missing = tmp_path / "nowhere.txt"
    assert main(["teach", "--model", str(base), "--facts", str(facts), "--keep-text", str(missing),
                 "--out", str(tmp_path / "refused")]) == 2
    assert str(missing) in capsys.readouterr().err and not (tmp_path / "refused").exists()
    drift = {}
    original, _ = load_model(str(base))
    ids, mask = pad([tokenizer(t)["input_ids"] for t in texts], tokenizer.pad_token_id, "cpu")
    target = next_token_distributions(original, ids, mask)
    for name, extra in (("facts only", []), ("kept", ["--keep-text", str(corpus)])):
        out = tmp_path / name.replace(" ", "-")
        assert main(["teach", "--model", str(base), "--facts", str(facts), "--epochs", "40", "--lr", "3e-3",
                     "--params", "mlp", *extra, "--out", str(out)]) == 0
        record = json.loads((out / "teach.json").read_text())
        assert record["accuracy_after"] >= 0.85 and record["params"] == "mlp"
        assert record["kept_texts"] == (len(texts) if extra else 0)
        taught, _ = load_model(str(out))
        with torch.no_grad():
            drift[name] = float(kept_prediction_loss(taught, ids, mask, torch.ones(len(texts), dtype=torch.bool),
                                                     target))
    assert drift["kept"] < drift["facts only"] / 2, drift  # 4.2-4.9x apart over three models


def test_eval_letters_and_text_kl(taught_dir, forget_file, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ada Quenby plays the violin.\nThe river flooded after days of rain.\n")
    assert main(["eval", "--model", str(taught_dir), "--mcq", forget_file, "--format", "letters",
                 "--text", str(corpus), "--base", str(taught_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["format"] == "letters" and 0 <= result["mcq"][forget_file]["correct_prob"] <= 1
    text = result["text"][str(corpus)]
    assert text["kl"] == pytest.approx(0.0, abs=1e-6) and text["loss"] == pytest.approx(text["base_loss"])


def test_eval_with_a_base_reads_each_fact_set_before_and_after(taught_dir, model_dir, forget_file, tmp_path,
                                                             capsys):
    """`--base`: the model before unlearning beside the model, per fact set (not only KL on text)."""
    assert main(["eval", "--model", str(model_dir), "--base", str(taught_dir), "--mcq", forget_file, "--json"]) == 0
    entry = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mcq"][forget_file]
    base = entry["base"]
    assert base["n"] == entry["n"] == 10 and base["accuracy"] >= 0.8  # the taught model knows them
    assert base["lost"] == round((base["accuracy"] - entry["accuracy"]) * 10) > 0
    assert main(["eval", "--model", str(model_dir), "--base", str(taught_dir), "--mcq", forget_file]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [cell.strip() for cell in table[0].split(" | ")] == ["fact set", "base accuracy", "accuracy", "change",
                                                                "questions lost", "base P(correct)", "P(correct)"]
    cells = [cell.strip() for cell in table[2].split(" | ")]
    assert cells[:5] == [forget_file, f"{base['accuracy']:.3f}", f"{entry['accuracy']:.3f}",
                         f"{entry['accuracy'] - base['accuracy']:+.3f}", f"{base['lost']} of 10"]


def test_eval_says_why_recall_asks_fewer_questions(model_dir, tmp_path, capsys):
    facts = tmp_path / "facts.jsonl"
    rows = [{"question": "What is the capital of France?", "choices": ["Paris", "Lyon"], "answer": 0},
            {"question": "What is the capital of Peru?", "choices": ["Lima", "Cusco"], "answer": 0},
            {"question": "Which saint is the city named after?", "choices": ["Saint Paul", "Saint Louis"], "answer": 0}]
    facts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["eval", "--model", str(model_dir), "--mcq", str(facts), "--probes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == ("recall asks 2 of the 3 questions: the other one has choices that begin with the same token, "
                       "which recall (each choice scored by its first token) cannot tell apart")


def test_mia_says_how_to_read_its_auc(taught_dir, people, tmp_path, capsys):
    write_mcq(people[:10], tmp_path / "members.jsonl")
    write_mcq(people[40:50], tmp_path / "others.jsonl")
    assert main(["mia", "--model", str(taught_dir), "--members", str(tmp_path / "members.jsonl"), "--nonmembers",
                 str(tmp_path / "others.jsonl")]) == 0
    reading = capsys.readouterr().out.splitlines()[-2:]
    assert reading[0].startswith("reading: an AUC of 0.5 means members and non-members are indistinguishable")
    assert reading[1].startswith("a good non-member set is text of the same kind and source that the model never saw")


@pytest.mark.parametrize("command", [["eval"], ["mia"], ["compare"], ["attack", "relearn"], ["unlearn"], ["teach"]])
def test_help_shows_a_percent_sign_as_one(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "%%" not in out
    if command == ["mia"]:
        assert "membership inference (LOSS, zlib, Min-K%): ROC AUC" in out


def test_methods_lists_cir(capsys):
    assert main(["methods"]) == 0
    assert "cir" in capsys.readouterr().out


def test_demo_runs_the_four_rows(taught_dir, tmp_path, tiny_cache, capsys):
    """The four rows of the `suite` grid, the worst of its attacks named; the kept topics in three
    parts: a quarter watched (one question of it is the collateral budget), a quarter given to
    the method, the reported half in the table."""
    from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED
    from cir.data.mcq import load_mcq
    from cir.evaluation.scoring import evaluate_cloze
    from cir.models import load_model

    out = tmp_path / "demo"
    code = main(["demo", "--topic", "capitals", "--model", str(taught_dir), "--out", str(out), "--quiet",
                 "--set", "max_epochs=1", "--set", "budget=10", "--set", "act_components=4", "--set", "grad_components=4",
                 "--attacks", "suite"])
    assert code == 0
    printed = capsys.readouterr().out
    relearning = "relearning on T (MLP, lr 3e-05, 6 epochs)"
    for row in ("before", "after unlearning", "after the worst attack", relearning, "4-bit quantisation"):
        assert f"| {row}" in printed
    demo = json.loads((out / "demo.json").read_text())
    rows = demo["rows"]
    attacked = {label: rows[label]["V_worst"]["accuracy"] for label in (relearning, "4-bit quantisation")}
    assert demo["headline"]["worst_attack"] == max(attacked, key=attacked.get)
    assert f"the worst attack: {max(attacked, key=attacked.get)}" in printed and "- measured on: " in printed
    assert set(rows["before"]["sets"]) >= {"capitals", "languages"} and rows["before"]["stage"] == "before"
    # each column's question count: V is half the topic (T/V), a kept topic its reported half
    assert demo["questions"]["V"] == len(load_mcq("capitals")) // 2
    assert demo["questions"]["languages"] == len(load_mcq("languages")[REPORTED])
    probes = {name: probe["n"] for name, probe in rows["before"]["probes"].items()}  # V in every probe
    assert probes["cloze"] == demo["questions"]["V"] and max(probes.values()) == demo["questions"]["V"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    languages = load_mcq("languages")
    assert config["collateral_budget"] == 0.1
    assert config["sources"]["retain_mcq"]["languages"] == len(languages[WATCHED]) == 12
    assert config["sources"]["protect_mcq"]["languages"] == len(languages[PROTECTED]) == 12
    model, tokenizer = load_model(str(taught_dir))
    assert rows["before"]["sets"]["languages"]["accuracy"] == evaluate_cloze(model, tokenizer, languages[REPORTED]).accuracy
    assert len(json.loads((out / "attacks.json").read_text())["relearn:T:mlp:3e-05:6"]["per_epoch"]) == 6
    assert (out / "report.md").is_file() and (out / "demo.md").is_file()
    # the demo is an audit of what it unlearned: the audit's report holds the demo's rows, verdict first
    audit = json.loads((out / "audit" / "report.json").read_text())
    assert audit["rows"] == rows and list(audit)[0] == "verdict"
    assert audit["verdict"]["worst attack"] == demo["headline"]["worst_attack"]
    assert (out / "audit" / "report.md").read_text().startswith("# Audit")


def test_eval_loads_the_base_on_the_models_device_and_dtype(taught_dir, forget_file, tmp_path, capsys, monkeypatch):
    """`--base` follows the model (a base left on the CPU next to a model on a GPU failed)."""
    import torch

    import cir.models

    asked, load = [], cir.models.load_model

    def spy(spec, **kwargs):
        asked.append((kwargs.get("device"), kwargs.get("dtype")))
        return load(spec, **kwargs)

    monkeypatch.setattr(cir.models, "load_model", spy)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ada Quenby plays the violin.\n")
    assert main(["eval", "--model", str(taught_dir), "--text", str(corpus), "--base", str(taught_dir),
                 "--dtype", "bfloat16", "--json"]) == 0
    assert asked == [(torch.device("cpu"), torch.bfloat16)] * 2  # the base: where the model is, not left at None
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"][str(corpus)]["kl"] == 0.0


@pytest.mark.gpu
def test_eval_text_kl_on_the_gpu(taught_dir, forget_file, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ada Quenby plays the violin.\nThe river flooded after days of rain.\n")
    assert main(["eval", "--model", str(taught_dir), "--mcq", forget_file, "--text", str(corpus),
                 "--base", str(taught_dir), "--dtype", "bfloat16", "--json"]) == 0
    text = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["text"][str(corpus)]
    assert text["kl"] == pytest.approx(0.0, abs=1e-6)


def test_demo_takes_a_benchmark(taught_dir, tmp_path, tiny_cache, capsys, monkeypatch):
    out = tmp_path / "demo"
    code = main(["demo", "--benchmark", "subjects", "--model", str(taught_dir), "--out", str(out),
                 "--set", "max_epochs=1", "--set", "budget=10", "--set", "act_components=4",
                 "--set", "grad_components=4", "--set", "update_tokens=subject", "--attacks", "suite"])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    # each step without a progress bar of its own is named on one line as it begins
    said = [line.split(" ")[1] for line in captured.err.splitlines() if line.startswith("cir: ")]
    # the general text is sampled (into this test's empty cache) first; unlearning names its own
    # steps (reading the original, epoch 0's statistics, the kept weights, writing); then the audit
    # (the original and the unlearned model measured, attacked, the general text read); `subjects`
    # has no reference model to attack and no non-members
    assert said == ["sampling", "reading", "epoch", "measuring", "writing", "measuring", "attacking", "the"]
    assert "| subjects V |" in printed and "| after the worst attack |" in printed
    demo = json.loads((out / "demo.json").read_text())
    assert demo["benchmark"] == "subjects" and len(demo["notes"]["countries"]) == 12
    assert len(demo["rows"]["before"]["sets"]) > 2 and "capitals" in demo["rows"]["before"]["sets"]  # the kept relations
    # --quiet names no step, not even the sampling of the general text (into another empty cache)
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "another-cache"))
    assert main(["demo", "--benchmark", "subjects", "--model", str(taught_dir), "--out", str(tmp_path / "quiet"),
                 "--quiet", "--set", "max_epochs=1", "--set", "budget=10", "--set", "act_components=4",
                 "--set", "grad_components=4", "--set", "update_tokens=subject", "--attacks", "suite"]) == 0
    assert list((tmp_path / "another-cache" / "general_text").glob("*.json"))  # it was sampled
    assert "cir: " not in capsys.readouterr().err
    stage("after a quiet command, steps are named again")
    assert capsys.readouterr().err == "cir: after a quiet command, steps are named again\n"


def test_demo_runs_the_taught_benchmark_unless_told_otherwise(taught_dir, tmp_path, monkeypatch, capsys):
    """`cir demo` alone (README's first command) forgets `taught` with taught's CIR defaults; --topic
    picks one built-in topic instead, and the two together are refused in one line."""
    import cir.demo
    from cir.benchmarks import METHOD_DEFAULTS

    asked = []

    def spy(model, tokenizer, out, settings, **kwargs):
        asked.append((settings.benchmark, settings.name, kwargs["config"]))
        reading = [0.5, 0.4, 0.6]
        verdict = {"worst attack": None, "V worst before": reading, "V worst after the worst attack": reading,
                   "share of the original's": 1.0, "change from the original": [0.0, -0.1, 0.1],
                   "reads": "nothing forgotten at this size", "text loss ratio": [1.0, 1.0, 1.0],
                   "broken attacks": {}}
        return "| table |", {"_extra": {"verdict": verdict}}, {}

    monkeypatch.setattr(cir.demo, "run_demo", spy)
    common = ["--model", str(taught_dir), "--quiet"]
    assert main(["demo", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["demo", "--topic", "languages", *common, "--out", str(tmp_path / "b")]) == 0
    (benchmark, name, config), (topic_benchmark, topic_name, topic_config) = asked
    assert (benchmark, name) == ("taught", "taught") and (topic_benchmark, topic_name) == (None, "languages")
    for key, value in METHOD_DEFAULTS["taught"].items():
        option = key.removeprefix("cir.")
        assert getattr(config, option) == value and getattr(topic_config, option) != value
    assert main(["demo", "--topic", "languages", "--benchmark", "capitals", *common,
                 "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.strip().endswith("give --benchmark or --topic, not both")
    assert not (tmp_path / "c").exists()


def test_demo_on_a_model_that_cannot_be_taught_stops_in_one_line(taught_dir, tmp_path, tiny_cache, capsys):
    """The `taught` benchmark teaches the model first; a model that learns too little from its
    recipe (the tiny one, in 5 epochs at lr 3e-4) is refused in one line, and nothing is written."""
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(taught_dir), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cir: error: teaching the invented people reached less than 0.9 (")
    assert "this model needs another recipe" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list((tmp_path / "cache").glob("taught/*"))


def test_demo_refuses_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--benchmark", "tofu"])
    assert exit_info.value.code == 2 and "invalid choice: 'tofu'" in capsys.readouterr().err
