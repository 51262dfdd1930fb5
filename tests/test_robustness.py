"""Hostile and unusual inputs, as a new user gives them: nothing is lost or written half, no model
with non-finite weights is saved, and every case ends in one line with exit code 2 on the command
line, or in a typed exception naming the argument in the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import cir
from cir.cli import main
from cir.errors import DivergedError, InputError
from cir.methods.cir import CIRConfig

GOOD = {"question": "What is the capital of France?", "choices": ["Paris", "Lyon"], "answer": 0}
OTHER = {"question": "What is the capital of Peru?", "choices": ["Lima", "Cusco"], "answer": 0}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def facts_file(tmp_path, *records, name="facts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records or [GOOD, OTHER]))
    return path


# ---------------------------------------------------------------- two writers of one output directory
def _kept_beside(out: Path) -> Path:
    (kept,) = [p for p in out.parent.iterdir() if p.name.startswith(f"{out.name}.partial-")]
    return kept


def test_a_run_refuses_an_output_directory_written_meanwhile_and_keeps_its_result(tmp_path):
    from cir.outputs import staged_output

    out = tmp_path / "run"
    with pytest.raises(InputError) as error:
        with staged_output(out) as staging:
            (staging / "result.json").write_text("mine")
            out.mkdir()  # another run, started a moment later, finished first
            (out / "result.json").write_text("theirs")
    kept = _kept_beside(out)
    assert str(error.value) == (f"{out} appeared while this run was working; rerun with --overwrite, or see {kept} "
                                "(this run's result)")
    assert (out / "result.json").read_text() == "theirs" and (kept / "result.json").read_text() == "mine"


def test_an_empty_output_directory_made_meanwhile_is_replaced(tmp_path):
    from cir.outputs import staged_output

    out = tmp_path / "run"
    with staged_output(out) as staging:
        (staging / "result.json").write_text("mine")
        out.mkdir()
    assert (out / "result.json").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_overwrite_replaces_an_output_directory_written_meanwhile(tmp_path):
    from cir.outputs import staged_output

    out = tmp_path / "run"
    with staged_output(out, overwrite=True) as staging:
        (staging / "result.json").write_text("mine")
        out.mkdir()
        (out / "result.json").write_text("theirs")
    assert (out / "result.json").read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_teach_refuses_an_out_written_while_it_trained(model_dir, tmp_path, monkeypatch, capsys):
    import cir.training.finetune

    out = tmp_path / "taught"

    def another_run_finishes(*args, **kwargs):
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(cir.training.finetune, "finetune", another_run_finishes)
    code, err = run_cli(capsys, "teach", "--model", model_dir, "--facts", facts_file(tmp_path), "--out", out)
    kept = _kept_beside(out)
    assert code == 2 and err == (f"cir: error: {out} appeared while this run was working; rerun with --overwrite, "
                                 f"or see {kept} (this run's result)")
    assert (out / "config.json").read_text() == "{}" and (kept / "model.safetensors").is_file()


def _claim_of(out: Path, pid: int) -> Path:
    import socket

    claim = out.parent / f".{out.name}.claim"
    claim.write_text(f"{pid}@{socket.gethostname()}\n")
    return claim


def test_a_second_run_given_the_same_out_is_refused_at_its_start(tmp_path, capsys):
    import os
    import socket

    out = tmp_path / "taught"
    claim = _claim_of(out, os.getppid())  # a run that still works (this test's parent process)
    code, err = run_cli(capsys, "teach", "--model", "no-such-model", "--facts", facts_file(tmp_path), "--out", out)
    assert code == 2 and err == (f"cir: error: {out}: another cir run (process {os.getppid()} on "
                                 f"{socket.gethostname()}) is writing this output directory; wait for it to finish "
                                 f"or give another one (if no run is, remove {claim})")
    assert not out.exists() and claim.read_text() == f"{os.getppid()}@{socket.gethostname()}\n"
    code, err = run_cli(capsys, "teach", "--model", "no-such-model", "--facts", facts_file(tmp_path), "--out", out,
                        "--overwrite")
    assert code == 2 and "another cir run" in err  # --overwrite replaces a finished run, never a working one


def test_a_run_claims_its_out_while_it_works_and_takes_over_a_dead_claim(model_dir, tmp_path, capsys, monkeypatch):
    import os
    import subprocess
    import sys

    from cir.training import finetune as module

    out = tmp_path / "taught"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    claim = _claim_of(out, gone.pid)  # a run killed with SIGKILL leaves its claim behind
    seen, finetune = [], module.finetune

    def watched(*args, **kwargs):
        seen.append(claim.read_text().split("@")[0])
        return finetune(*args, **kwargs)

    monkeypatch.setattr(module, "finetune", watched)
    code, _ = run_cli(capsys, "teach", "--model", model_dir, "--facts", facts_file(tmp_path), "--epochs", "1",
                      "--lr", "1e-4", "--out", out)
    assert code == 0 and seen == [str(os.getpid())] and (out / "teach.json").is_file()
    assert not claim.exists()  # released when the run ends


@pytest.mark.parametrize("umask, directory, file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640),
                                                    (0o077, 0o700, 0o600)])
def test_an_output_directory_is_as_readable_as_the_umask_allows(tmp_path, umask, directory, file):
    import os

    from cir.outputs import staged_output, write_json

    out = tmp_path / "run"
    before = os.umask(umask)
    try:
        with staged_output(out) as staging:
            write_json(staging / "result.json", {"ok": True})
    finally:
        os.umask(before)
    assert out.stat().st_mode & 0o777 == directory and (out / "result.json").stat().st_mode & 0o777 == file


# ---------------------------------------------------------------- training that diverges, bad schedules
def test_teach_with_a_huge_learning_rate_stops_and_writes_nothing(model_dir, tmp_path, capsys):
    out = tmp_path / "taught"
    code, err = run_cli(capsys, "teach", "--model", model_dir, "--facts", facts_file(tmp_path), "--epochs", "3",
                        "--lr", "1e30", "--out", out)
    err = err.splitlines()[-1]  # after the progress bar's
    assert code == 2 and err.startswith("cir: error: training diverged in epoch ")
    assert err.endswith("(learning rate 1e+30 is too large); nothing is saved")
    assert [p.name for p in tmp_path.iterdir()] == ["facts.jsonl"]


def test_no_model_with_non_finite_weights_is_saved(model_dir, tmp_path):
    from cir.models import load_model, save_model

    model, tokenizer = load_model(str(model_dir))
    with torch.no_grad():
        model.model.norm.weight[:3] = float("nan")
    with pytest.raises(DivergedError, match="^the model holds 3 NaN or infinite weights: not saved$"):
        save_model(model, tokenizer, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_relearning_that_diverges_raises(model_dir, people):
    from cir.attacks import relearn
    from cir.models import load_model

    model, tokenizer = load_model(str(model_dir))
    with pytest.raises(DivergedError, match=r"^training diverged in epoch \d: .*\(learning rate 1e\+30 is too large\)"):
        relearn(model, tokenizer, people[:5], people[5:10], epochs=3, lr=1e30, optimizer="sgd", params="all")


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("teach", ["--lr", "-0.001"], "--lr must be a finite number > 0, got -0.001"),
        ("teach", ["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        ("teach", ["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
        ("relearn", ["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        ("relearn", ["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        ("relearn", ["--epochs", "-2"], "--epochs must be an integer >= 1, got -2"),
    ],
)
def test_epochs_and_learning_rates_are_checked_before_loading(tmp_path, capsys, command, flags, message):
    facts = facts_file(tmp_path)
    argv = (["teach", "--facts", facts, "--out", tmp_path / "out"] if command == "teach"
            else ["attack", "relearn", "--train", facts, "--eval", facts])
    code, err = run_cli(capsys, *argv, "--model", "no-such-model", *flags)
    assert code == 2 and err == f"cir: error: {message}"
    assert not (tmp_path / "out").exists()


def test_teach_that_breaks_the_model_without_a_nan_is_refused_and_writes_nothing(model_dir, tmp_path, capsys):
    """At lr 1000 the loss and the weights stay finite: the weights' growth says the model broke."""
    out = tmp_path / "taught"
    code, err = run_cli(capsys, "teach", "--model", model_dir, "--facts", facts_file(tmp_path), "--epochs", "2",
                        "--lr", "1000", "--out", out)
    err = err.splitlines()[-1]
    assert code == 2 and err.startswith("cir: error: training diverged: the trained weights' norm grew ")
    assert err.endswith("(learning rate 1000 is too large); nothing is saved")
    assert [p.name for p in tmp_path.iterdir()] == ["facts.jsonl"]


def test_training_is_judged_broken_by_its_effect():
    from cir.training.finetune import broken_by

    assert broken_by(0.7, 0.5, 40.0, 60.0) is None  # learnt: the loss fell, the weights grew 1.5-fold
    assert broken_by(7.0, 6.9, 25.0, 2.6e6) == ("the trained weights' norm grew 104,000-fold (from 25 to 2.6e+06)")
    assert broken_by(0.7, 3.4, 40.0, 300.0) == ("its loss rose past where it began (from 0.700 before training to "
                                                "3.400 in the last epoch)")
    assert broken_by(0.7, 0.8, 40.0, 41.0) is None  # a little above where it began: noise, not breaking


def test_relearning_that_breaks_the_model_is_one_line_on_the_command_line(taught_dir, people, tmp_path, capsys):
    from cir.data.synthetic import write_mcq

    write_mcq(people[:10], tmp_path / "T.jsonl")
    write_mcq(people[10:20], tmp_path / "V.jsonl")
    code = main(["attack", "relearn", "--model", str(taught_dir), "--train", str(tmp_path / "T.jsonl"), "--eval",
                 str(tmp_path / "V.jsonl"), "--lr", "1000", "--params", "all", "--epochs", "2"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("cir: error: the relearning broke the model: the trained weights' norm grew ")
    assert err.strip().endswith("(--lr 1000 is too large for it); its accuracy on --eval would say nothing of what "
                                "came back")


# ---------------------------------------------------------------- T and V that overlap
def test_relearning_refuses_a_v_that_t_holds_before_loading(people, tmp_path, capsys):
    import dataclasses

    from cir.data.synthetic import write_mcq

    write_mcq(people[:10], tmp_path / "T.jsonl")
    train = tmp_path / "T.jsonl"
    code, err = run_cli(capsys, "attack", "relearn", "--model", "no-such-model", "--train", train, "--eval", train)
    assert code == 2 and err == ("cir: error: --train and --eval overlap: 10 of the 10 questions of --eval are in "
                                 "--train (10 the same question); an attack trained on them would read what it "
                                 "taught, not what came back: give --eval questions about other subjects")
    write_mcq([dataclasses.replace(item, question=item.question + " (again)") for item in people[3:5]],
              tmp_path / "reworded.jsonl")
    code, err = run_cli(capsys, "attack", "relearn", "--model", "no-such-model", "--train", train, "--eval",
                        tmp_path / "reworded.jsonl")  # other questions about the people of T
    assert code == 2 and "overlap: 2 of the 2 questions of --eval are in --train (2 the same subject)" in err


def test_the_api_and_the_grid_refuse_t_and_v_that_overlap(model_dir, people):
    from cir.attacks import Relearning, relearn, run_attack
    from cir.models import load_model

    model, tokenizer = load_model(str(model_dir))
    with pytest.raises(InputError, match=r"^train_items and eval_items overlap: 5 of the 5 questions"):
        relearn(model, tokenizer, people[:10], people[5:10], epochs=1)
    with pytest.raises(InputError, match=r"^T and V overlap: 5 of the 5 questions of V are in T"):
        run_attack(model, tokenizer, Relearning(epochs=1), {"T": people[:10]}, people[:5], {})


@pytest.mark.parametrize("epochs, lr, message", [(0, 1e-3, "epochs must be an integer >= 1, got 0"),
                                                 (1, float("nan"), "lr must be a finite number > 0, got nan"),
                                                 (1, -1.0, "lr must be a finite number > 0, got -1.0")])
def test_the_api_checks_epochs_and_learning_rates(model_dir, people, epochs, lr, message):
    from cir.attacks import relearn
    from cir.models import load_model

    model, tokenizer = load_model(str(model_dir))
    with pytest.raises(InputError, match=f"^{message}$"):
        relearn(model, tokenizer, people[:5], people[5:10], epochs=epochs, lr=lr)


# ---------------------------------------------------------------- JSON with null, never a bare NaN
def test_json_is_written_with_null_for_non_finite_numbers(tmp_path):
    from cir.outputs import to_json, write_json

    value = {"V_before": [1.0, float("nan")], "loss": float("inf"), "n": (2, -float("inf"))}
    assert to_json(value) == '{"V_before": [1.0, null], "loss": null, "n": [2, null]}'
    write_json(tmp_path / "out.json", value)
    assert json.loads((tmp_path / "out.json").read_text())["V_before"] == [1.0, None]


def test_metrics_with_null_are_read_back(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 0, "forget_accuracy": 0.9, "disruption": 1.0}\n'
                                       '{"epoch": 1, "forget_accuracy": 0.5, "disruption": null}\n')
    assert run_cli(capsys, "report", run)[0] == 0
    report = json.loads((run / "robustness" / "report.json").read_text())
    assert report["runs"][0]["metrics"][1]["disruption"] is None


# ---------------------------------------------------------------- a corrupt compare journal
def _journal(tmp_path, lines: list[bytes]) -> Path:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


HEADER = {"kind": "header", "settings": {"trials": 1}, "model": "m", "inputs": "abc"}
TRIAL = {"kind": "trial", "method": "cir", "number": 0, "params": {}, "options": {}, "overrides": [],
         "stop_reason": "max_epochs (1)", "epochs": [], "budgets": {}, "seconds": 1.0}


@pytest.mark.parametrize(
    "lines, line",
    [
        ([json.dumps(HEADER).encode(), b'{"kind": "trial", "method": "caf\xe9"}'], 2),
        ([json.dumps(HEADER).encode(), b"[1, 2]"], 2),
        ([json.dumps(HEADER).encode(), json.dumps({k: v for k, v in TRIAL.items() if k != "params"}).encode()], 2),
        ([json.dumps(HEADER).encode(), json.dumps(HEADER).encode()], 2),
        ([b""], 1),
        ([json.dumps(HEADER).encode()[:25]], 1),
        ([json.dumps(TRIAL).encode()], 1),
    ],
)
def test_a_corrupt_journal_is_refused(tmp_path, lines, line):
    from cir.comparison import Journal

    path = _journal(tmp_path, lines)
    before = path.read_bytes()
    with pytest.raises(InputError) as error:
        Journal(path, HEADER)
    assert str(error.value) == f"{path}:{line}: not a journal record (use --overwrite to start over)"
    assert path.read_bytes() == before


def test_a_journal_cut_short_continues(tmp_path):
    from cir.comparison import Journal

    header, trial = json.dumps(HEADER).encode(), json.dumps(TRIAL).encode()
    path = _journal(tmp_path, [header, trial, trial[:30]])
    assert Journal(path, HEADER).records == [TRIAL]
    assert path.read_text() == json.dumps(HEADER) + "\n" + json.dumps(TRIAL) + "\n"


def test_compare_refuses_a_corrupt_journal_before_loading(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    journal = _journal(out, [json.dumps(HEADER).encode(), b'{"kind": "final"}'])
    facts = facts_file(tmp_path, *[GOOD | {"question": f"Question {i}?"} for i in range(4)])
    code, err = run_cli(capsys, "compare", "--model", "no-such-model", "--forget", facts, "--out", out)
    assert code == 2 and err == f"cir: error: {journal}:2: not a journal record (use --overwrite to start over)"


# ---------------------------------------------------------------- texts too short to score
@pytest.fixture(scope="module")
def no_bos_model_dir(model_dir, tmp_path_factory):
    """The tiny model with a tokenizer that adds no BOS token (as SmolLM2's): a one-token line
    has nothing to predict."""
    import shutil

    path = tmp_path_factory.mktemp("no-bos") / "model"
    shutil.copytree(model_dir, path)
    spec = json.loads((path / "tokenizer.json").read_text())
    spec["post_processor"] = None
    (path / "tokenizer.json").write_text(json.dumps(spec))
    return path


def test_eval_of_one_token_lines_names_the_file(no_bos_model_dir, tmp_path, capsys):
    corpus = tmp_path / "short.txt"
    corpus.write_text("a\nb\n")
    code, err = run_cli(capsys, "eval", "--model", no_bos_model_dir, "--text", corpus)
    assert code == 2 and err == f"cir: error: {corpus}: no text to score: every document is shorter than 2 tokens"


def test_mia_names_the_line_too_short_to_score(no_bos_model_dir, tmp_path, capsys):
    members, nonmembers = tmp_path / "members.txt", tmp_path / "nonmembers.txt"
    members.write_text("Ada Quenby works as a baker.\n\nb\n")
    nonmembers.write_text("Bram Marrow plays the violin.\n")
    code, err = run_cli(capsys, "mia", "--model", no_bos_model_dir, "--members", members, "--nonmembers", nonmembers)
    assert code == 2
    assert err == f"cir: error: {members}:3: text too short to score: 'b' (a score needs at least 2 tokens)"


# ---------------------------------------------------------------- a cache that cannot be written
def test_the_bundled_model_is_not_converted_into_a_read_only_cache(unwritable, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIR_CACHE", str(unwritable / "cache"))
    code, err = run_cli(capsys, "eval", "--mcq", facts_file(tmp_path))
    assert code == 2 and err == (f"cir: error: {unwritable}: cannot write here (Permission denied): the bundled "
                                 "model is converted once into the cache; set CIR_CACHE to a writable directory")


def test_general_text_is_sampled_without_a_writable_cache(model_dir, unwritable, monkeypatch):
    from cir.data.general import sample_general_text
    from cir.models import load_model

    monkeypatch.setenv("CIR_CACHE", str(unwritable / "cache"))
    model, tokenizer = load_model(str(model_dir))
    with pytest.warns(UserWarning, match="^general text not cached: cannot write .*general_text"):
        texts = sample_general_text(model, tokenizer, samples_per_prompt=1, max_new_tokens=2)
    assert len(texts) == 83 and not (unwritable / "cache").exists()


# ---------------------------------------------------------------- line separators inside a document
def test_unicode_line_separators_stay_inside_a_document(tmp_path):
    from cir.data import load_mcq, load_texts

    question = "Which city\u2028is the capital\u2029of France\u0085?"
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps(GOOD | {"question": question}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\u2028document\r\nanother\u0085one\n", encoding="utf-8")
    assert [item.question for item in load_mcq(facts)] == [question]
    assert load_texts(corpus) == ["one\u2028document", "another\u0085one"]


# ---------------------------------------------------------------- what the API takes
@pytest.fixture
def tiny(model_dir):
    from cir.models import load_model

    return load_model(str(model_dir))


def test_the_api_reads_specs_and_paths_as_the_command_line_does(tiny, tmp_path):
    from cir.attacks import mia
    from cir.data import load_facts, load_texts

    model, tokenizer = tiny
    corpus = tmp_path / "ok.txt"
    corpus.write_text("The first document is here.\nA second one follows it.\n")
    facts = facts_file(tmp_path)
    result = cir.evaluate(model, tokenizer, mcq=facts, text=str(corpus))
    assert result["text"][str(corpus)]["n"] == 2 and result["mcq"][str(facts)]["n"] == 2
    read = cir.evaluate(model, tokenizer, text=load_texts(corpus))["text"]["text"]
    assert result["text"][str(corpus)]["loss"] == read["loss"]
    assert load_facts(facts) == load_facts(str(facts)) == load_facts([facts])
    assert mia(model, tokenizer, facts, corpus)["n_members"] == len(load_facts(facts)[0].sentences()) * 2


@pytest.mark.parametrize(
    "error, call, message",
    [
        (TypeError, lambda m, t: cir.evaluate(m, t, mcq=[1, 2]),
         "mcq must be questions (a list of MCQ) or fact set specs (a file, a topic, hf:...), got a list of int"),
        (TypeError, lambda m, t: cir.evaluate(m, t, text=[1]),
         "text must be texts (a list of str) or a corpus spec (a .txt or JSONL file, hf:...), got a list of int"),
        (TypeError, lambda m, t: cir.unlearn(m, t, "capitals", watch={"x": 5}),
         "watch['x'] must be questions (a list of MCQ) or fact set specs (a file, a topic, hf:...), got int"),
        (TypeError, lambda m, t: cir.unlearn(m, t, "capitals", watch=["capitals"]),
         "watch must be a dict of fact sets ({name: questions or spec}), got list"),
        (TypeError, lambda m, t: cir.unlearn(m, t, "capitals", retain=5),
         "retain must be texts (a list of str) or a corpus spec (a .txt or JSONL file, hf:...), got int"),
        (TypeError, lambda m, t: cir.attacks.relearn(m, t, "capitals", 3),
         "eval_items must be questions (a list of MCQ) or fact set specs (a file, a topic, hf:...), got int"),
        (InputError, lambda m, t: cir.evaluate(m, t, mcq=[]), "mcq: no questions"),
        (InputError, lambda m, t: cir.evaluate(m, t, text=[]), "text: no text"),
        (InputError, lambda m, t: cir.evaluate(m, t, text=[""]), "text: no text"),
        (InputError, lambda m, t: cir.unlearn(m, t, []), "forget: no questions"),
        (InputError, lambda m, t: cir.attacks.relearn(m, t, "capitals", []), "eval_items: no questions"),
        (InputError, lambda m, t: cir.attacks.relearn(m, t, [], "capitals"), "train_items: no questions"),
        (InputError, lambda m, t: cir.attacks.quantize(m, t, []), "fact_sets: no questions"),
        (InputError, lambda m, t: cir.attacks.suite(m, t, "capitals", []), "held_out: no questions"),
        (InputError, lambda m, t: cir.attacks.mia(m, t, [], ["x y"]), "members: no text"),
    ],
)
def test_the_api_names_an_argument_of_the_wrong_type_or_empty(tiny, error, call, message):
    with pytest.raises(error) as raised:
        call(*tiny)
    assert str(raised.value) == message


# ---------------------------------------------------------------- configs of the wrong type
@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: cir.RunConfig(max_epochs="2"), TypeError, "max_epochs must be an integer, got '2'"),
        (lambda: cir.CompareSettings(methods="cir"), TypeError,
         "methods must be a list of strings, got 'cir'"),
        (lambda: cir.CompareSettings(trials="2"), TypeError, "trials must be an integer, got '2'"),
        (lambda: cir.CompareSettings.quick(max_facts=-1), ValueError,
         r"max_facts must be >= 4 \(T and V need two questions each\), got -1"),
        (lambda: CIRConfig(unlearning_rate=None), TypeError,
         "unlearning_rate must be a finite number, got None"),
    ],
)
def test_configs_check_their_types(make, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        make()


@pytest.mark.parametrize(
    "make, also, message",
    [
        (lambda: cir.RunConfig(max_epochs=0), ValueError, "max_epochs must be an integer >= 1, got 0"),
        (lambda: cir.RunConfig(disruption="loss"), ValueError, "disruption must be loss_ratio or kl, got 'loss'"),
        (lambda: cir.RunConfig(max_epochs="2"), TypeError, "max_epochs must be an integer, got '2'"),
        (lambda: CIRConfig(unlearning_rate=-1.0), ValueError, "unlearning_rate must be > 0"),
        (lambda: cir.attacks.AttackConfig(split_ratio=2.0), ValueError, "split_ratio must be between 0 and 1, got 2.0"),
        (lambda: cir.CompareSettings(trials="2"), TypeError, "trials must be an integer, got '2'"),
    ],
)
def test_every_bad_option_through_the_api_is_an_input_error(make, also, message):
    """What the command line prints as one line (exit code 2), and the ValueError or TypeError
    that Python code catches."""
    with pytest.raises(InputError, match=f"^{message}$") as error:
        make()
    assert isinstance(error.value, also)


def test_a_bad_argument_of_the_api_is_an_input_error(tiny, tmp_path):
    model, tokenizer = tiny
    calls = [lambda: cir.unlearn(model, tokenizer, "capitals", watch=["capitals"]),
             lambda: cir.unlearn_to_dir(model, tokenizer, "capitals", tmp_path / "run", overwrite="no"),
             lambda: cir.evaluate(model, tokenizer, mcq=[1, 2]),
             lambda: cir.evaluate(model, tokenizer, mcq=facts_file(tmp_path), fmt="essay"),
             lambda: cir.unlearn(model, tokenizer, "capitals", loop=CIRConfig())]
    for call in calls:
        with pytest.raises(InputError):
            call()
    assert not (tmp_path / "run").exists()


def test_the_api_refuses_a_config_in_the_wrong_place(tiny, tmp_path):
    model, tokenizer = tiny
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    calls = {"loop must be a RunConfig, got CIRConfig (a method's config goes in config=)":
             lambda: cir.unlearn(model, tokenizer, "capitals", loop=CIRConfig()),
             "settings must be a CompareSettings (e.g. CompareSettings(trials=1)), got dict":
             lambda: cir.compare(model, tokenizer, "capitals", settings={"trials": 1}),
             "overwrite must be True or False, got 'no'":
             lambda: cir.unlearn_to_dir(model, tokenizer, "capitals", out, overwrite="no")}
    for message, call in calls.items():
        with pytest.raises(TypeError) as error:
            call()
        assert str(error.value) == message
    assert (out / "keep.txt").read_text() == "precious"


# ---------------------------------------------------------------- a backend this machine cannot run
@pytest.mark.skipif(torch.cuda.is_available(), reason="bitsandbytes runs here")
def test_quantize_with_bnb_without_cuda_is_refused_before_loading(tmp_path, capsys):
    code, err = run_cli(capsys, "attack", "quantize", "--model", "no-such-model", "--bits", "4", "--backend", "bnb",
                        "--mcq", facts_file(tmp_path))
    assert code == 2 and err == "cir: error: --backend bnb needs a CUDA device (use rtn on CPU)"


# ---------------------------------------------------------------- fact sets: empty specs, repeats, statements, look-alikes
def test_an_empty_forget_spec(tmp_path, capsys):
    code, err = run_cli(capsys, "unlearn", "--forget", "", "--out", tmp_path / "run")
    assert code == 2 and err == ("cir: error: empty fact set spec: expected a JSONL file, builtin:TOPIC, a topic name "
                                 "or hf:NAME")


def test_the_same_fact_set_twice_is_refused(tmp_path, capsys):
    facts = facts_file(tmp_path)
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--forget", facts, "--out", tmp_path / "run")
    assert code == 2 and err == f"cir: error: {facts}: fact set given twice"
    other = facts_file(tmp_path, OTHER, name="other.jsonl")
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--forget", other, "--out", tmp_path / "run")
    assert code == 2 and err == f"cir: error: {other}: question {OTHER['question']!r} is also asked by {facts}"


@pytest.mark.parametrize("statement", ["Lima is the capital of Peru.", "The capital of Peru is Lima",
                                       "Is Lima the capital of Peru?"])
def test_a_statement_must_be_a_stem(tmp_path, capsys, statement):
    facts = facts_file(tmp_path, OTHER | {"statement": statement})
    code, err = run_cli(capsys, "eval", "--mcq", facts)
    assert code == 2 and err == (f"cir: error: {facts}:1: field 'statement' must be a stem the answer completes "
                                 f"(\"The capital of France is\"), not a whole sentence: {statement!r}")


@pytest.mark.parametrize("choices", [["Z\u00fcrich", "Zu\u0308rich"], ["Lima", "Li\u200bma"]])
def test_choices_that_look_the_same_are_one(tmp_path, capsys, choices):
    facts = facts_file(tmp_path, GOOD | {"choices": ["Paris", *choices]})
    code, err = run_cli(capsys, "eval", "--mcq", facts)
    assert code == 2 and err == f"cir: error: {facts}:1: field 'choices': choice 3 ({choices[1]!r}) repeats choice 2"


def test_builtin_statements_are_stems():
    from cir.data import topic_sets

    assert all(item.statement for items in topic_sets().values() for item in items)
