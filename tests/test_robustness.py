"""Hostile and unusual inputs, as a new user gives them: nothing is lost or written half, no model
with non-finite weights is saved, and every case ends in one line with exit code 2 on the command
line, or in a typed exception naming the argument in the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cir.cli import main
from cir.errors import DivergedError, InputError

GOOD = {"question": "What is the capital of France?", "choices": ["Paris", "Lyon"], "answer": 0}
OTHER = {"question": "What is the capital of Peru?", "choices": ["Lima", "Cusco"], "answer": 0}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def facts_file(tmp_path, *records, name="facts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records or [GOOD, OTHER]))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    """A one-layer random Llama saved as an HF directory."""
    from conftest import tiny_llama

    from cir.models import save_model

    path = tmp_path_factory.mktemp("tiny")
    save_model(tiny_llama(len(tokenizer), layers=1), tokenizer, path)
    return path


# ---------------------------------------------------------------- 1: two writers of one output directory
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
    import cir.finetune

    out = tmp_path / "taught"

    def another_run_finishes(*args, **kwargs):
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(cir.finetune, "finetune", another_run_finishes)
    code, err = run_cli(capsys, "teach", "--model", model_dir, "--facts", facts_file(tmp_path), "--out", out)
    kept = _kept_beside(out)
    assert code == 2 and err == (f"cir: error: {out} appeared while this run was working; rerun with --overwrite, "
                                 f"or see {kept} (this run's result)")
    assert (out / "config.json").read_text() == "{}" and (kept / "model.safetensors").is_file()


# ---------------------------------------------------------------- 2 and 4: training that diverges, bad schedules
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


@pytest.mark.parametrize("epochs, lr, message", [(0, 1e-3, "epochs must be an integer >= 1, got 0"),
                                                 (1, float("nan"), "lr must be a finite number > 0, got nan"),
                                                 (1, -1.0, "lr must be a finite number > 0, got -1.0")])
def test_the_api_checks_epochs_and_learning_rates(model_dir, people, epochs, lr, message):
    from cir.attacks import relearn
    from cir.models import load_model

    model, tokenizer = load_model(str(model_dir))
    with pytest.raises(InputError, match=f"^{message}$"):
        relearn(model, tokenizer, people[:5], people[5:10], epochs=epochs, lr=lr)


# ---------------------------------------------------------------- 3: JSON with null, never a bare NaN
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


# ---------------------------------------------------------------- 7: a corrupt compare journal
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

    path = _journal(tmp_path, [json.dumps(HEADER).encode(), json.dumps(TRIAL).encode(), json.dumps(TRIAL).encode()[:30]])
    assert Journal(path, HEADER).records == [TRIAL]
    assert path.read_text() == json.dumps(HEADER) + "\n" + json.dumps(TRIAL) + "\n"


def test_compare_refuses_a_corrupt_journal_before_loading(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    journal = _journal(out, [json.dumps(HEADER).encode(), b'{"kind": "final"}'])
    facts = facts_file(tmp_path, *[GOOD | {"question": f"Question {i}?"} for i in range(4)])
    code, err = run_cli(capsys, "compare", "--model", "no-such-model", "--forget", facts, "--out", out)
    assert code == 2 and err == f"cir: error: {journal}:2: not a journal record (use --overwrite to start over)"
