"""`cir compare` end to end on a tiny model, and its statistics."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from cir.attacks import AttackConfig
from cir.comparison.summary import cell_rows, readings

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
    # without subjects, each question is a subject of its own: 12 to split, so every seed draws another T/V
    write_mcq([dataclasses.replace(item, subject=None) for item in people[:12]], forget)
    retain = tmp_path / "retain.txt"
    retain.write_text("\n".join(s for item in people[12:] for s in item.sentences()) + "\n")
    keep = tmp_path / "keep.jsonl"
    write_mcq(people[40:64], keep)
    return str(forget), str(retain), str(keep)


BUDGETS = (0.02, 0.2, 2.0)


def compare_args(taught_dir, inputs, out, *extra):
    forget, retain, keep = inputs
    return ["compare", "--model", str(taught_dir), "--forget", forget, "--retain", retain, "--retain-mcq", keep, "--quick",
            "--methods", "cir,gradient_ascent", "--trials", "2", "--seeds", "2",
            "--budgets", ",".join(map(str, BUDGETS)), "--collateral", "1", "--set", "cir.act_components=4",
            "--set", "cir.grad_components=4", "--quiet", "--out", str(out), *extra]


def test_compare_fills_the_frontier_within_each_budget(taught_dir, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    assert main(compare_args(taught_dir, inputs, out)) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["command"].startswith("cir compare --model")
    methods = result["methods"]
    assert list(methods) == ["cir", "gradient_ascent"]
    kept = set()
    for name, entry in methods.items():
        # every (method, budget) cell, each from searched settings and measured on seeds 1 and 2 only
        assert [cell["budget"] for cell in entry["budgets"]] == list(BUDGETS)
        assert len(entry["trials"]) == 2
        for cell in entry["budgets"]:
            assert cell["best"] in [t["overrides"] for t in entry["trials"]]
            assert [run["seed"] for run in cell["runs"]] == [1, 2]
            assert not math.isnan(cell["summary"]["V_worst_after_relearning"][1])  # two seeds: an interval
            # and the bootstrap's, over the questions of both seeds, from the runs' own rows
            for score in ("probability", "accuracy"):
                estimate, low, high = cell["summary"]["intervals"][score]["V_worst_after_relearning"]
                assert 0 <= low <= high <= 1 and 0 <= estimate <= 1
        # each budget keeps the last epoch before its own first violation, never one beyond it
        for record in entry["trials"] + [r for r in _journal(out) if r["kind"] == "final" and r["method"] == name]:
            ratios = [e["loss_ratio"] for e in record["epochs"]]
            for index, row in record["budgets"].items():
                budget, epoch = 1 + BUDGETS[int(index)], row["kept_epoch"]
                kept.add(epoch)
                assert row["loss_ratio"] == ratios[epoch] <= budget
                assert all(r <= budget for r in ratios[:epoch + 1])
                assert epoch + 1 == len(ratios) or ratios[epoch + 1] > budget
    assert kept - {0}, "some run kept an unlearned epoch"
    # CIR's search covers its loss as well as its step
    assert any(o.startswith("forget_loss=") for o in methods["cir"]["trials"][0]["overrides"])
    # seeds 1 and 2 draw other T/V splits than seed 0, which chose the settings
    splits = result["splits"]
    assert splits["1"] != splits["0"] and splits["2"] != splits["0"] and splits["1"] != splits["2"]
    table = (out / "compare.md").read_text()
    # a row per budget, one in the asymmetric table, and one per search trial with its kept epochs
    assert table.count("| cir |") == len(BUDGETS) + 1 + len(methods["cir"]["trials"]) and "asymmetric" in table
    for trial in methods["cir"]["trials"]:
        row = next(line for line in table.splitlines() if line.startswith(f"| cir | {trial['number'] + 1} |"))
        assert row.endswith(" | ".join(f"{c['kept_epoch']}, {readings(c)['V_worst_after_relearning']:.3f}"
                                       for c in trial["budgets"].values()) + " |")
        for cell in trial["budgets"].values():  # each cell's rows: after unlearning and the suite's attacks
            rows = cell_rows(cell)
            assert set(rows) == {"after unlearning", "relearn"} and rows["relearn"].stage == "attack"
            assert readings(cell)["V_worst_after_relearning"] == rows["relearn"].V_worst.accuracy
    assert (out / "frontier.png").exists()
    assert "| gradient_ascent |" in capsys.readouterr().out


def _journal(out):
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def _refuse(constant):
    raise AssertionError(f"bare {constant} in compare.json")


def test_compare_continues_an_interrupted_comparison(taught_dir, inputs, tmp_path, monkeypatch):
    from cir.comparison import Comparison

    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    args = compare_args(taught_dir, inputs, out, "--methods", "gradient_ascent", "--seeds", "1")
    assert main(args) == 0
    whole = json.loads((out / "compare.json").read_text(), parse_constant=_refuse)  # one seed: no interval
    lines = (out / "journal.jsonl").read_text().splitlines()
    first = [i for i, line in enumerate(lines) if json.loads(line)["kind"] == "trial"][0]
    # interrupted after the first trial, in the middle of writing the next record
    (out / "journal.jsonl").write_text("\n".join(lines[:first + 1]) + "\n" + lines[first + 1][:20])
    (out / "compare.json").unlink()
    runs = []
    original = Comparison.trajectory
    monkeypatch.setattr(Comparison, "trajectory", lambda self, method, options, seed, *rest, **kw:
                        runs.append((method, seed)) or original(self, method, options, seed, *rest, **kw))
    assert main(args) == 0
    assert runs and ("gradient_ascent", 0) in runs and len([r for r in runs if r[1] == 0]) == 1  # trial 1 not rerun
    again = json.loads((out / "compare.json").read_text(), parse_constant=_refuse)
    assert again["methods"]["gradient_ascent"]["budgets"][0]["summary"]["V_before"][1] is None
    for cell, cell_again in zip(whole["methods"]["gradient_ascent"]["budgets"], again["methods"]["gradient_ascent"]["budgets"]):
        assert cell["best"] == cell_again["best"]
        for run, run_again in zip(cell["runs"], cell_again["runs"]):
            assert run["V_worst_after_relearning"] == run_again["V_worst_after_relearning"]
    # a journal of other settings is refused, and left as it was
    before = (out / "journal.jsonl").read_text()
    assert main(compare_args(taught_dir, inputs, out, "--methods", "gradient_ascent", "--trials", "3")) == 2
    assert (out / "journal.jsonl").read_text() == before


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


@pytest.mark.parametrize("flags, message", [
    (["--budgets", "0.01,0.001"], "--budgets must be rising shares"),
    (["--budgets", "0.001,x"], "--budgets takes comma-separated numbers"),
    (["--collateral", "0.1,0.05,0.2,0.3"], "--collateral must be one value or one per budget"),
    (["--collateral", "0.1,0.2"], "--collateral must be one value or one per budget (4)"),
    (["--attacks", "strongest"], "--attacks must be one of suite, default, wide, full, got 'strongest'"),
])
def test_compare_refuses_bad_budgets_before_loading(tmp_path, capsys, flags, message):
    code = main(["compare", "--model", "no/such-model", "--forget", "capitals", *flags, "--out", str(tmp_path / "x")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_first_trials_spread_over_the_step_range():
    from cir.comparison import grid_trial
    from cir.methods import get_method

    low, high = get_method("npo").Config.rate_range
    steps = [grid_trial("npo", k, trials=2)["unlearning_rate"] for k in range(2)]
    assert steps == pytest.approx([low * (high / low) ** 0.25, low * (high / low) ** 0.75])
    assert grid_trial("npo", 0, trials=1)["unlearning_rate"] == pytest.approx(math.sqrt(low * high))
    three = [grid_trial("cir", k, trials=5)["unlearning_rate"] for k in range(3)]
    assert three[0] < three[1] < three[2] and all(low_ <= s <= high_ for s in three
                                                 for low_, high_ in [get_method("cir").Config.rate_range])
    assert grid_trial("cir", 0, trials=2)["forget_loss"] == get_method("cir").Config().forget_loss


def test_a_cell_that_kept_the_original_weights_is_marked():
    from cir.comparison import STAGES, budget_table, summarise

    def run(seed, kept_epoch):
        return {"seed": seed, "kept_epoch": kept_epoch, "V_before": 0.9, "V_worst_before": 1.0,
                "loss_ratio": 1.0, "collateral": 0.0, "seconds_per_fact": 1.0, "topics_change": {"animals": 0.0},
                **{stage: 0.9 for stage in STAGES}}

    def cell(kept):
        runs = [run(seed, epoch) for seed, epoch in enumerate(kept, 1)]
        return {"best": ["unlearning_rate=0.5"], "best_trial": 0, "runs": runs, "summary": summarise(runs)}

    result = {"settings": {"attacks": {"quantize_bits": 4}},
              "methods": {"cir": {"budgets": [cell([0, 3])]}, "npo": {"budgets": [cell([2, 3])]}}}
    lines = budget_table(result, 0).splitlines()
    assert "**nothing unlearned** on 1 of 2 seeds (kept epoch 0)" in next(l for l in lines if l.startswith("| cir |"))
    assert "nothing unlearned" not in next(l for l in lines if l.startswith("| npo |"))


def test_a_method_whose_search_never_met_a_budget_is_named():
    from cir.comparison import unreached

    def trial(step, ratios, kept):  # kept: the epoch each of two budgets kept
        epochs = [{"loss_ratio": 1.0, "collateral": 0.0}] + [{"loss_ratio": r, "collateral": 0.0} for r in ratios]
        return {"params": {"unlearning_rate": step}, "epochs": epochs,
                "budgets": {str(i): {"kept_epoch": k} for i, k in enumerate(kept)}}

    result = {"methods": {
        "rmu": {"trials": [trial(0.001, [1.0, 1.0001], [2, 2]), trial(0.03, [1.0002, 1.0005], [2, 2])]},
        "npo": {"trials": [trial(0.001, [1.0001, 1.0002], [2, 2]), trial(0.03, [1.002, 1.004], [1, 2])]},
        "cir": {"trials": [trial(3.0, [1.04], [0, 0])]},  # rolled back: its budgets were met
    }}
    lines = unreached(result).splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("- ")] == ["- rmu"]
    assert "steps 0.001-0.03" in lines[-1] and "x1.0005" in lines[-1]
    assert unreached({"methods": {"npo": result["methods"]["npo"]}}) == ""


def _header(benchmark=None, watched=None, reported=None, protected=None) -> dict:
    """The journal header of a small comparison: four forget questions, the kept topics given."""
    from types import SimpleNamespace

    from cir.comparison import CompareSettings, Evaluation, journal_header
    from cir.data.mcq import MCQ

    items = [MCQ(f"Question {i}?", ("a", "b"), 0) for i in range(4)]
    evaluation = Evaluation(items, watched or {}, reported or {}, ["retain text"], ["held-out text"], protected)
    model = SimpleNamespace(config=SimpleNamespace(name_or_path="m"))
    return journal_header(model, CompareSettings.quick(), evaluation, benchmark)


def test_a_journal_of_one_benchmark_is_refused_for_another(tmp_path):
    from cir.comparison import Journal
    from cir.errors import InputError

    header = _header("subjects")
    assert header["benchmark"] == "subjects" and "benchmark" not in _header()
    Journal(tmp_path / "journal.jsonl", header)
    with pytest.raises(InputError, match="holds a comparison with other settings"):
        Journal(tmp_path / "journal.jsonl", _header("taught"))


def test_a_journal_is_refused_when_the_kept_topics_changed(tmp_path):
    from cir.comparison import Journal
    from cir.data.mcq import MCQ
    from cir.errors import InputError

    kept = {"topic": [MCQ("Kept?", ("x", "y"), 0)]}
    Journal(tmp_path / "journal.jsonl", _header(watched=kept))
    reworded = {"topic": [MCQ("Kept, reworded?", ("x", "y"), 0)]}
    for watched, reported, protected in ((reworded, {}, None), (kept, reworded, None), (kept, {}, reworded)):
        with pytest.raises(InputError, match="holds a comparison with other settings"):
            Journal(tmp_path / "journal.jsonl", _header(watched=watched, reported=reported, protected=protected))


def test_compare_splits_each_kept_topic_into_three_parts_read_apart():
    """The budget's, the method's and the tables' questions of each kept topic: disjoint, and
    together the whole topic (a quarter, a quarter, a half)."""
    from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED
    from cir.evaluation.protocol import watched_retain_sets

    from cir.data.mcq import MCQ

    topic = [MCQ(f"Question {i}?", ("a", "b"), 0) for i in range(48)]
    parts = [watched_retain_sets([], {"t": topic}, part)["t"] for part in (WATCHED, PROTECTED, REPORTED)]
    assert [len(p) for p in parts] == [12, 12, 24]
    assert sorted(q.question for p in parts for q in p) == sorted(q.question for q in topic)


def test_a_benchmarks_compare_leaves_the_step_and_the_loss_to_the_search():
    """taught's own CIR defaults set a step and a loss for the demo; its comparison fixes only the
    rest (the search sets those two), so its journal's settings do not change with them."""
    import argparse

    from cir.cli import compare as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    settings = command.settings_of(parser.parse_args(["--benchmark", "taught", "--out", "unused"]))
    assert settings.options == {"cir.update_tokens": "subject"}


def test_a_second_process_journal_merges_into_the_main_one(tmp_path):
    """bench/merge_journals.py: the records the main journal lacks are added after its own, in
    the order they were made; another comparison, an unknown method or a shared measurement
    taken differently is refused and leaves the main journal as it was."""
    import subprocess
    import sys
    from pathlib import Path

    def header(methods, budgets=(0.001, 0.01)):
        return {"kind": "header", "settings": {"methods": methods, "budgets": list(budgets)}, "model": "m",
                "inputs": "abc"}

    def trial(method, number):
        return {"kind": "trial", "method": method, "number": number, "params": {}, "options": {}, "overrides": [],
                "stop_reason": "max_epochs (2)", "epochs": [], "budgets": {}, "seconds": 1.0}

    before = {"kind": "before", "seed": 1, "V_before": 1.0, "V_worst_before": 1.0, "topics": {}}
    final = {"kind": "final", "method": "rmu", "number": 0, "seed": 1, "stop_reason": "max_epochs (2)",
             "epochs": [], "budgets": {}, "seconds": 1.0}

    def write(name, records):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path

    def merge(main_path, other_path):
        script = Path(__file__).resolve().parent.parent / "bench" / "merge_journals.py"
        return subprocess.run([sys.executable, str(script), str(main_path), str(other_path)],
                              capture_output=True, text=True)

    main_records = [header(["cir", "npo", "rmu"]), before, trial("cir", 0), trial("cir", 1)]
    main_path = write("main.jsonl", main_records)
    other = write("other.jsonl", [header(["rmu"]), before, trial("rmu", 0), trial("rmu", 1), final])
    done = merge(main_path, other)
    assert done.returncode == 0, done.stderr
    assert "3 record(s) added" in done.stdout
    merged = [json.loads(line) for line in main_path.read_text().splitlines()]
    assert merged == main_records + [trial("rmu", 0), trial("rmu", 1), final]

    for records, message in (([header(["rmu"], budgets=(0.003,)), trial("rmu", 2)], "settings.budgets"),
                             ([header(["gd"]), trial("gd", 0)], "method(s) the main one does not: gd"),
                             ([header(["rmu"]), {**before, "V_before": 0.5}], "measured before 1 differently")):
        text = main_path.read_text()
        refused = merge(main_path, write("bad.jsonl", records))
        assert refused.returncode != 0 and message in refused.stderr
        assert main_path.read_text() == text


def test_the_judging_runs_meet_the_grid_and_name_its_worst_attack(taught_dir, inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cmp"
    args = compare_args(taught_dir, inputs, out)
    args[args.index("cir,gradient_ascent")] = "cir"
    args[args.index("--trials") + 1] = args[args.index("--seeds") + 1] = "1"
    assert main(args + ["--attacks", "suite"]) == 0
    finals = [r for r in _journal(out) if r["kind"] == "final"]
    assert finals
    for record in finals:
        for cell in record["budgets"].values():
            row = readings(cell)
            grid = row["grid_V_worst"]
            assert row["grid"] == "suite" and len(grid) == 2  # relearning on T and 4-bit
            assert row["V_worst_after_worst_attack"] == grid[row["worst_attack"]] == max(grid.values())
    trials = [r for r in _journal(out) if r["kind"] == "trial"]
    assert trials and all("worst_attack" not in cell for t in trials for cell in t["budgets"].values())  # the search reads the suite
    summary = json.loads((out / "compare.json").read_text())["methods"]["cir"]["budgets"][0]["summary"]
    assert summary["worst_attacks"] and "V_worst_after_worst_attack" in summary
    assert "V worst probe after the worst attack of grid 'suite'" in (out / "compare.md").read_text()


def test_the_residual_after_the_worst_attack_reads_the_reference_under_the_same_attack():
    from cir.evaluation.protocol import residual_of

    row = {"V_worst_after_relearning": 0.5, "V_worst_after_quantisation": 0.4, "worst_attack": "a",
           "V_worst_after_worst_attack": 0.5}
    never = {"V_worst_after_relearning": 0.25, "V_worst_after_quantisation": 0.25, "grid_V_worst": {"a": 0.2, "b": 0.9}}
    found = residual_of(row, never)
    assert found["residual_V_worst_after_worst_attack"] == pytest.approx(0.3)  # not 0.5 - 0.9, the reference's own worst
    assert "residual_V_worst_after_worst_attack" not in residual_of({k: v for k, v in row.items() if k != "worst_attack"},
                                                                     never)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "docs" / "journals").glob("*.jsonl")),
                         ids=lambda path: path.name)
def test_every_published_journal_still_loads_and_reads_by_name(path):
    """The journals behind docs/results were written before cells held rows: each loads, and every
    cell, "before" record and never-taught row reads by the same names a new one does."""
    from cir.comparison import read_journal, summarise
    from cir.comparison.summary import STAGES, before_readings

    records = read_journal(path)
    cells = [cell for r in records if r["kind"] in ("trial", "final") for cell in r["budgets"].values()]
    assert cells
    for cell in cells:
        values = readings(cell)
        assert 0.0 <= values["V_worst_after_relearning"] <= 1.0 and "kept_epoch" in values
    finals = [r for r in records if r["kind"] == "final"]
    befores = {r["seed"]: before_readings(r) for r in records if r["kind"] == "before"}
    runs = [{"seed": r["seed"], **{k: befores[r["seed"]][k] for k in ("V_before", "V_worst_before")}, **readings(cell),
             "topics_change": {t: readings(cell)["topics"][t] - befores[r["seed"]]["topics"][t]
                               for t in readings(cell)["topics"]}}
            for r in finals for cell in r["budgets"].values() if r["seed"] in befores and "V_after_quantisation" in readings(cell)]
    if runs:  # the summary the tables are written from
        assert set(STAGES) <= set(summarise(runs))


def _comparison(model, tokenizer, people, grid: str | None = None):
    from cir.comparison import CompareSettings, Comparison, Evaluation

    items = [dataclasses.replace(item, subject=None) for item in people[:12]]
    kept = people[40:64]
    evaluation = Evaluation(items, {"kept": kept[0::4], "more": kept[3::4]}, {"kept": kept[1::2]},
                            [s for item in people[12:30] for s in item.sentences()],
                            [s for item in people[30:40] for s in item.sentences()])
    settings = CompareSettings(methods=("gradient_ascent",), trials=1, seeds=1, max_epochs=1, grid=grid,
                               attacks=AttackConfig(relearn_epochs=1))
    return Comparison(model, tokenizer, evaluation, settings, progress=False), evaluation


def test_the_grid_reads_the_suites_4_bit_row_instead_of_quantising_again(taught, people, monkeypatch):
    """`default` holds 4-bit, which the suite has just measured on the same weights and split."""
    from cir.attacks import quantization

    model, tokenizer = taught
    comparison, _ = _comparison(model, tokenizer, people, grid="default")
    calls = []
    monkeypatch.setattr(quantization, "quantize_model", lambda *args, **kwargs: calls.append(1))
    cell = comparison.measure(model, 1, quantize=True)
    assert len(calls) == 1  # once, for the suite and the grid
    values = readings(cell)
    assert values["grid_V_worst"]["4-bit quantisation"] == values["V_worst_after_quantisation"]


def test_the_kept_facts_attack_trains_on_the_same_part_in_the_demo_and_the_comparison(taught, people, tmp_path,
                                                                                     monkeypatch):
    """Both give the attacker the first kept set's watched quarter, never the reported half."""
    import cir.attacks.grids
    import cir.comparison.search
    import cir.demo
    from cir.benchmarks import Setting
    from cir.evaluation.protocol import WATCHED

    model, tokenizer = taught
    given = []

    def capture(train, kept=(), general=(), seed=0):
        given.append(list(kept))
        raise StopIteration  # what the attacker is given is all this test reads

    from cir.comparison import CompareSettings, Comparison, Evaluation
    from cir.evaluation.protocol import PROTECTED, REPORTED, watched_retain_sets

    forget = [dataclasses.replace(item, subject=None) for item in people[:12]]
    topics = {"kept": people[40:64], "more": people[64:80]}
    general = ([s for item in people[12:30] for s in item.sentences()], [s for item in people[30:40] for s in item.sentences()])
    # the comparison as cir.compare builds it, the demo from a benchmark of the same facts
    evaluation = Evaluation(forget, *(watched_retain_sets(forget, topics, part) for part in (WATCHED, REPORTED)), *general,
                            watched_retain_sets(forget, topics, PROTECTED))
    comparison = Comparison(model, tokenizer, evaluation, CompareSettings(methods=("gradient_ascent",), trials=1, seeds=1,
                                                                          max_epochs=1, grid="default"), progress=False)
    monkeypatch.setattr(cir.comparison.search, "attack_texts", capture)
    with pytest.raises(StopIteration):
        comparison.grid_rows(model, 1)
    setting = Setting("toy", model, tokenizer, forget, topics, general=general)
    monkeypatch.setattr(cir.attacks.grids, "attack_texts", capture)  # as the demo's audit reads it
    monkeypatch.setattr(cir.demo, "unlearn_to_dir", lambda *args, **kwargs: None)
    monkeypatch.setattr(cir.demo.DemoSettings, "setting", lambda self, model, tokenizer, progress=True: setting)
    with pytest.raises(StopIteration):
        cir.demo.run_demo(model, tokenizer, tmp_path, cir.demo.DemoSettings(), progress=False)
    first = watched_retain_sets(forget, topics, WATCHED)["kept"]
    assert given[0] == given[1] == first and first and all(item in topics["kept"][WATCHED] for item in first)


def test_the_comparisons_rows_are_read_in_float32(taught, people):
    """A bfloat16 model's cell equals that of a float32 copy of its weights (as the demo's rows)."""
    import copy

    import torch

    model, tokenizer = taught
    low = copy.deepcopy(model).to(torch.bfloat16)
    high = copy.deepcopy(low).float()
    comparison, _ = _comparison(low, tokenizer, people)
    cells = [comparison.measure(m, 1, quantize=False) for m in (low, high)]
    for cell in cells:
        for row in cell["rows"].values():
            row.pop("seconds", None)
    assert cells[0] == cells[1]
    assert next(low.parameters()).dtype == torch.bfloat16  # the model itself is left in bfloat16
