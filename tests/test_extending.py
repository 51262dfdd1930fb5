"""docs/extending.md's recipes run as written: a method, an attack met by a grid and by `cir attack`,
a benchmark made and demoed, a metric read from the demo's rows (on a tiny model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "extending.md"


@pytest.fixture
def registrations():
    """Whatever the recipes register is taken out again after the test."""
    from cir.attacks import ATTACKS, GRIDS
    from cir.benchmarks import BENCHMARKS, METHOD_DEFAULTS
    from cir.methods import METHODS, method_names

    method_names()  # the built-in methods first, so that only the recipes' are new
    saved = [(table, dict(table)) for table in (ATTACKS, GRIDS, BENCHMARKS, METHOD_DEFAULTS, METHODS)]
    yield
    for table, before in saved:
        table.clear()
        table.update(before)


def test_every_recipe_of_the_extending_guide_runs(taught, taught_dir, people, tmp_path, monkeypatch, registrations, capsys):
    from cir.attacks import ATTACKS, GRIDS
    from cir.benchmarks import benchmark_names
    from cir.cli import main
    from cir.data.synthetic import write_mcq

    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    model, tokenizer = taught
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4
    namespace = {"model": model, "tokenizer": tokenizer, "facts": people[:40], "out_dir": tmp_path}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    # each recipe registered what it made, and the interfaces meet it with no other edit
    assert "noise" in ATTACKS and "noisy" in GRIDS and "animals" in benchmark_names()
    rows = {name: row for name, row in namespace["rows"].items() if name != "_extra"}  # the demo's
    assert {row.attack for row in rows.values() if row.stage == "attack"} == {"noise:0.01:0", "quantize:8bit"}
    assert (tmp_path / "animals" / "demo.md").is_file()
    # `cir attack noise`: the attack's fields as options, V before and after
    facts = tmp_path / "v.jsonl"
    write_mcq(people[:10], facts)
    capsys.readouterr()
    assert main(["attack", "noise", "--model", str(taught_dir), "--eval", str(facts), "--scale", "0.5"]) == 0
    assert "weight noise (x0.5): V " in capsys.readouterr().out
    assert main(["attack", "noise", "--model", str(taught_dir), "--eval", str(facts), "--scale", "lots"]) == 2
