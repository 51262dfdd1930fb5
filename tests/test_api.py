"""The Python API: docs/api.md runs as written (a tiny model standing in for the bundled one),
its promises hold, `import cir` stays cheap, and the command line lists every command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import cir
from cir.cli import COMMANDS, build_parser, main
from cir.evaluation.scoring import evaluate_cloze
from cir.models import load_model

ROOT = Path(__file__).resolve().parent.parent


def doc_blocks(name: str = "docs/api.md") -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), re.S)


def test_the_readme_shows_the_api_docs_first_example():
    assert doc_blocks("README.md") == doc_blocks()[:1]


def same_weights(model, saved: dict) -> bool:
    return all(torch.equal(tensor, saved[name]) for name, tensor in model.state_dict().items())


def test_the_api_doc_runs_and_keeps_its_promises(taught_dir, people, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cir, "load_model", lambda spec: load_model(str(taught_dir)))
    monkeypatch.setattr(cir, "load_facts", lambda spec: people[:20])  # 4 taught people, 5 facts each
    first, typed, directories = doc_blocks()
    names = {}

    exec(first, names)
    model, tokenizer, result, facts = names["model"], names["tokenizer"], names["result"], names["facts"]
    original, _ = load_model(str(taught_dir))
    # unlearning changed the model in place, to the weights of the kept epoch
    assert evaluate_cloze(model, tokenizer, facts).accuracy == pytest.approx(result.kept["forget_accuracy"])
    assert result.kept["in_budget"] and result.kept == result.metrics[result.kept_epoch]
    assert same_weights(model, original.state_dict()) == (result.kept_epoch == 0)
    assert result.seconds_per_fact == pytest.approx(result.seconds / 20)
    # the suite attacked copies: the model still answers V as it did after unlearning
    attacked, after = names["attacked"], names["after"]["mcq"]["V"]
    assert evaluate_cloze(model, tokenizer, names["held_out"]).accuracy == pytest.approx(after["accuracy"])
    assert attacked["relearn"].V.accuracy == max(attacked["relearn"].record["per_epoch"])
    assert after["probes"]["worst_accuracy"] == max(after["probes"]["probes"].values())
    assert "kept epoch" in capsys.readouterr().out

    exec(typed, names)  # its own asserts: the typed configs were used

    exec(directories, names)
    run_dir = tmp_path / "runs" / "capitals"
    assert {"config.yaml", "metrics.jsonl", "result.json", "report.md"} <= {p.name for p in run_dir.iterdir()}
    assert sorted(names["comparison"]["methods"]) == ["cir", "gradient_ascent"]
    # the run directory holds the weights unlearn_to_dir left in the model, which compare gave back
    written = load_file(run_dir / "model.safetensors")
    assert all(torch.equal(tensor, written[name]) for name, tensor in model.state_dict().items() if name in written)


def test_importing_cir_loads_no_heavy_optional_dependency():
    heavy = ("matplotlib", "peft", "optuna", "datasets")
    code = (f"import sys, cir; cir.unlearn, cir.attacks.suite, cir.compare; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""
    # and the check can fail: plotting does load one of them
    code = "import sys, cir.report; cir.report.pyplot(); print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_unlearn_refuses_bad_options_before_running(llama, tokenizer, people, monkeypatch):
    from cir.methods.npo import NPOConfig

    def never(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr("cir.api.general_text_split", never)
    with pytest.raises(cir.InputError, match="unknown option 'max_epoch'"):
        cir.unlearn(llama, tokenizer, people[:5], max_epoch=2)
    with pytest.raises(cir.InputError, match="max_epochs must be an integer, got 1.5"):
        cir.unlearn(llama, tokenizer, people[:5], max_epochs=1.5)
    with pytest.raises(cir.InputError, match="not the CIRConfig of method cir"):
        cir.unlearn(llama, tokenizer, people[:5], config=NPOConfig())
    with pytest.raises(cir.InputError, match="unknown method 'nope'"):
        cir.unlearn(llama, tokenizer, people[:5], loop=cir.RunConfig(method="nope"))


def test_compare_settings_own_their_rules():
    with pytest.raises(ValueError, match="options cannot change max_epochs, seed"):
        cir.CompareSettings(options={"max_epochs": 3, "cir.seed": 1})
    with pytest.raises(ValueError, match="methods has unknown method"):
        cir.CompareSettings(methods=("cir", "nope"))
    with pytest.raises(ValueError, match="trials must be >= 1"):
        cir.CompareSettings(trials=0)
    with pytest.raises(cir.InputError, match="unknown option 'nonsense'"):
        cir.CompareSettings(options={"nonsense": 1})
    settings = cir.CompareSettings(methods=("cir", "npo"), options={"cir.act_components": 4, "max_length": 32})
    assert settings.options_for("npo") == {"max_length": 32}
    assert settings.options_for("cir") == {"cir.act_components": 4, "max_length": 32}


def test_every_command_declares_its_options(capsys):
    parser = build_parser()
    listed = next(a for a in parser._actions if a.dest == "command").choices
    assert list(listed) == list(COMMANDS) and len(COMMANDS) == 12
    run_options = {"--method", "--config", "--set", "--seed", "--out", "--overwrite"}
    for name in ("unlearn", "demo"):
        assert run_options <= set(listed[name]._option_string_actions), name
    assert {"--seed", "--out", "--overwrite"} <= set(listed["teach"]._option_string_actions)
    assert {"--set", "--seed", "--out"} <= set(listed["compare"]._option_string_actions)
    assert {"--original", "--unlearned", "--forget", "--reference", "--attacks", "--seed", "--out"} <= set(
        listed["audit"]._option_string_actions)


def test_topics_lists_every_builtin_topic(capsys):
    assert main(["topics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["animals", "capitals", "continents", "currencies", "languages",
                                                   "science"]
    assert "48 questions  (builtin:capitals)" in lines[1]
