"""`cir compare` end to end on a tiny model, and its statistics."""

from __future__ import annotations

import json
import math

import pytest

from cir.cli import main
from cir.comparison import mean_ci
from cir.data.synthetic import write_mcq


def test_mean_ci_is_the_t_interval():
    mean, half = mean_ci([0.5, 0.7])
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(12.706 * 0.1414214 / math.sqrt(2), rel=1e-4)
    assert math.isnan(mean_ci([0.4])[1])


@pytest.fixture
def inputs(tmp_path, people):
    forget = tmp_path / "forget.jsonl"
    write_mcq(people[:12], forget)
    retain = tmp_path / "retain.txt"
    retain.write_text("\n".join(s for item in people[12:] for s in item.sentences()) + "\n")
    return str(forget), str(retain)


def test_compare_writes_a_fair_table(taught_dir, inputs, tmp_path, monkeypatch, capsys):
    forget, retain = inputs
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    code = main(["compare", "--model", str(taught_dir), "--forget", forget, "--retain", retain, "--quick",
                 "--methods", "cir,gradient_ascent", "--trials", "2", "--seeds", "2", "--budget", "1.05",
                 "--set", "cir.act_components=4", "--set", "cir.grad_components=4", "--quiet", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["command"].startswith("cir compare --model")
    methods = result["methods"]
    assert list(methods) == ["cir", "gradient_ascent"]
    for name, entry in methods.items():
        assert len(entry["trials"]) == 2 and len(entry["runs"]) == 2
        # the budget holds for every kept run (rollback), and the best setting is a searched one
        assert all(t["loss_ratio"] <= 1.05 for t in entry["trials"] + entry["runs"])
        assert entry["best"] in [t["overrides"] for t in entry["trials"]]
        assert not math.isnan(entry["summary"]["V_after_relearning"][1])  # two seeds: an interval
        assert set(entry["runs"][0]["topics"]) == {"animals", "capitals", "continents", "currencies", "languages",
                                                   "science"}
    # every method is measured on the same splits: V before unlearning is the same per seed
    for seed in range(2):
        assert methods["cir"]["runs"][seed]["V_before"] == methods["gradient_ascent"]["runs"][seed]["V_before"]
    # CIR's search covers its loss as well as its step
    assert any(o.startswith("forget_loss=") for o in methods["cir"]["trials"][0]["overrides"])
    table = (out / "compare.md").read_text()
    assert "| cir |" in table and "| gradient_ascent |" in table and "survives relearning" in table
    assert (out / "accuracy.png").exists() and (out / "trials.png").exists()
    assert "| cir |" in capsys.readouterr().out


def test_compare_refuses_unknown_methods_before_loading(tmp_path, capsys):
    code = main(["compare", "--model", "no/such-model", "--forget", "capitals", "--methods", "cir,nope",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_compare_refuses_to_let_set_change_the_shared_budget(tmp_path, capsys):
    code = main(["compare", "--model", "no/such-model", "--forget", "capitals", "--set", "max_epochs=9",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--set cannot change max_epochs" in capsys.readouterr().err
