"""Bad files and places: model directories, run directories for `cir report`, output paths.
Each ends in one line naming the file, with exit code 2, and leaves nothing lost or half-written."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cir.cli import main

GOOD = {"question": "What is the capital of France?", "choices": ["Paris", "Lyon"], "answer": 0}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def facts_file(tmp_path, *records) -> Path:
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records or [GOOD]))
    return path


# ---------------------------------------------------------------- model directories
@pytest.fixture
def broken_model(model_dir, tmp_path):
    """A copy of the tiny model directory without its weights, for a test to break."""
    path = tmp_path / "model"
    shutil.copytree(model_dir, path)
    (path / "model.safetensors").unlink()
    return path


def test_model_directory_without_weights(broken_model, tmp_path, capsys):
    code, err = run_cli(capsys, "eval", "--model", broken_model, "--mcq", facts_file(tmp_path))
    assert code == 2 and err == (f"cir: error: {broken_model}: no weights: expected model.safetensors, "
                                 "pytorch_model.bin or their sharded index")


def test_truncated_safetensors(model_dir, broken_model, tmp_path, capsys):
    weights = (model_dir / "model.safetensors").read_bytes()
    (broken_model / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    code, err = run_cli(capsys, "eval", "--model", broken_model, "--mcq", facts_file(tmp_path))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"cir: error: {broken_model}: cannot load the model files in this directory [SafetensorError")


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_pickle_that_weights_only_loading_refuses(broken_model, tmp_path, capsys):
    import torch

    torch.save({"model.embed_tokens.weight": _Payload()}, broken_model / "pytorch_model.bin")
    code = main(["eval", "--model", str(broken_model), "--mcq", str(facts_file(tmp_path))])
    captured = capsys.readouterr()
    assert code == 2 and "payload ran" not in captured.out
    assert captured.err.strip() == (f"cir: error: {broken_model}: cannot load the model files in this directory "
                                    "[UnpicklingError: a weights file holds objects that weights-only loading refuses "
                                    "(code could run)]")


def test_prompt_longer_than_the_context(model_dir, tmp_path, capsys):
    long = GOOD | {"question": "Which of these cities, " + "far away and long ago, " * 60 + "is the capital?"}
    code, err = run_cli(capsys, "eval", "--model", model_dir, "--mcq", facts_file(tmp_path, GOOD, long))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("cir: error: prompt 'Question: Which of these cities, far away and ...' is ")
    assert err.endswith("tokens, longer than the model's context of 256")


def test_second_conversion_into_the_cache_finds_it_done(tmp_path):
    """Two processes converting the bundled model at once: the one renaming last finds the
    cache complete and succeeds (it used to crash with 'Directory not empty')."""
    from cir.models import publish

    target = tmp_path / "models" / "smollm2-135m-v2"
    target.parent.mkdir()
    for process in range(2):
        staging = Path(tempfile.mkdtemp(prefix=".smollm2-135m-v2-", dir=target.parent))
        (staging / "config.json").write_text("{}")
        (staging / "model.safetensors").write_text(f"weights of process {process}")
        publish(staging, target)
        assert not staging.exists()
    assert (target / "model.safetensors").read_text() == "weights of process 0"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# ---------------------------------------------------------------- cir report
def run_dir(tmp_path, rows, name="run") -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [{"epoch": 0, "forget_accuracy": 0.9, "disruption": 1.0}, {"epoch": 1, "forget_accuracy": 0.2,
                                                                  "disruption": 1.0004}]


def test_report_replaces_a_link_and_leaves_its_target(tmp_path, capsys):
    run = run_dir(tmp_path, ROWS)
    outside = tmp_path / "precious.md"
    outside.write_text("precious")
    (run / "robustness").mkdir()
    (run / "robustness" / "report.md").symlink_to(outside)
    code, _ = run_cli(capsys, "report", run)
    assert code == 0 and outside.read_text() == "precious"
    report = run / "robustness" / "report.md"
    assert not report.is_symlink() and report.read_text().startswith("# Robustness report")


def test_report_refuses_a_linked_output_directory(tmp_path, capsys):
    run = run_dir(tmp_path, ROWS)
    (tmp_path / "elsewhere").mkdir()
    (run / "robustness").symlink_to(tmp_path / "elsewhere")
    code, err = run_cli(capsys, "report", run)
    assert code == 2 and err == f"cir: error: {run / 'robustness'}: is not a directory (a link is not followed)"
    assert not list((tmp_path / "elsewhere").iterdir())


def test_report_json_has_null_for_nan(tmp_path, capsys):
    run = run_dir(tmp_path, [ROWS[0], '{"epoch": 1, "forget_accuracy": 0.5, "disruption": NaN}\n'])
    assert run_cli(capsys, "report", run)[0] == 0

    def refuse(constant):
        raise AssertionError(f"bare {constant} in report.json")

    report = json.loads((run / "robustness" / "report.json").read_text(), parse_constant=refuse)
    assert report["runs"][0]["metrics"][1]["disruption"] is None


def test_markdown_table_escapes_pipes():
    from cir.tables import markdown_table

    assert markdown_table(["set"], [["a|b"]]).splitlines()[-1] == "| a\\|b |"


@pytest.mark.parametrize(
    "rows, message",
    [
        ([ROWS[0], {"forget_accuracy": 0.2}], ":2: missing field 'epoch'"),
        ([ROWS[0], ROWS[1] | {"epoch": "1"}], ":2: field 'epoch' must be int, got str"),
        ([ROWS[0], ROWS[1] | {"forget_accuracy": "low"}], ":2: field 'forget_accuracy' must be a number, got str"),
        ([ROWS[0], {"epoch": 1, "disruption": 1.0}], ":2: missing field 'forget_accuracy'"),
        ([ROWS[0], "[1, 2]\n"], ":2: expected a JSON object, got list"),
    ],
)
def test_report_bad_metrics(tmp_path, capsys, rows, message):
    run = run_dir(tmp_path, rows)
    code, err = run_cli(capsys, "report", run)
    assert code == 2 and err == f"cir: error: {run / 'metrics.jsonl'}{message}"
    assert not (run / "robustness").exists()


# ---------------------------------------------------------------- output paths
def test_unwritable_out_is_refused_before_loading(tmp_path, unwritable, capsys):
    code, err = run_cli(capsys, "unlearn", "--model", "no-such-model", "--forget", facts_file(tmp_path),
                        "--out", unwritable / "run")
    assert code == 2 and err == f"cir: error: {unwritable}: cannot write here (Permission denied)"


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "people.jsonl"
    out.write_text("precious\n")
    code, err = run_cli(capsys, "synth", "--people", "1", "--out", out)
    assert code == 2 and err == f"cir: error: {out}: exists (use --overwrite to replace it)"
    assert out.read_text() == "precious\n"
    assert run_cli(capsys, "synth", "--people", "1", "--out", out, "--overwrite")[0] == 0
    assert len(out.read_text().splitlines()) == 5


@pytest.mark.parametrize("people", ["-5", "0", "481"])
def test_synth_needs_people(tmp_path, capsys, people):
    code, err = run_cli(capsys, "synth", "--people", people, "--out", tmp_path / "people.jsonl")
    assert code == 2 and err == f"cir: error: --people must be between 1 and 480, got {people}"


def test_synth_out_is_a_directory(tmp_path, capsys):
    code, err = run_cli(capsys, "synth", "--out", tmp_path)
    assert code == 2 and err == f"cir: error: {tmp_path}: is a directory, expected a file"


def test_synth_makes_missing_parent_directories(tmp_path, capsys):
    from cir.data import load_mcq

    out = tmp_path / "new" / "dir" / "people.jsonl"
    assert run_cli(capsys, "synth", "--people", "2", "--out", out)[0] == 0
    assert len(load_mcq(str(out))) == 10 and [p.name for p in out.parent.iterdir()] == ["people.jsonl"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_staging_of_a_dead_process_is_removed(tmp_path):
    from cir.outputs import staged_output

    host = socket.gethostname()
    dead = tmp_path / f".run.partial-{_dead_pid()}@{host}-abc123"
    alive = tmp_path / f".run.partial-{os.getpid()}@{host}-def456"
    other_machine = tmp_path / f".run.partial-{_dead_pid()}@not-{host}-ghi789"
    for staging in (dead, alive, other_machine):
        staging.mkdir()
        (staging / "model.safetensors").write_text("half")
    with staged_output(tmp_path / "run") as staging:
        (staging / "result.json").write_text("{}")
    assert not dead.exists() and alive.exists() and other_machine.exists()
    assert (tmp_path / "run" / "result.json").is_file()


def test_sigterm_removes_the_staging_directory(tmp_path):
    from cir.outputs import staged_output

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit:
        with staged_output(tmp_path / "run") as staging:
            (staging / "metrics.jsonl").write_text("{}\n")
            os.kill(os.getpid(), signal.SIGTERM)
    assert exit.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) == before


def test_synth_never_trains_the_prompt_evaluation_reads(tmp_path, capsys):
    from cir.evaluation.probes import battery_prompts
    from cir.data import load_mcq
    from cir.evaluation.scoring import cloze_prompt

    out = tmp_path / "people.jsonl"
    assert run_cli(capsys, "synth", "--people", "6", "--out", out)[0] == 0
    items = load_mcq(str(out))
    facts = " ".join(s for item in items for s in item.facts)
    assert all(item.question in facts for item in items)  # each question is also stated as a fact ...
    assert not any(cloze_prompt(item.question) in facts for item in items)  # ... never in the cloze prompt
    prompts = [p for _, texts in battery_prompts(items, 3, 0).values() for p in texts]
    assert not any(p.rstrip() in fact for p in prompts for item in items for fact in item.facts)
    cloze = tmp_path / "cloze.jsonl"
    assert run_cli(capsys, "synth", "--people", "6", "--question-form", "cloze", "--out", cloze)[0] == 0
    assert all(any(cloze_prompt(item.question) in f for f in item.facts) for item in load_mcq(str(cloze)))
