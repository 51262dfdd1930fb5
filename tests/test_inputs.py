"""Every bad input ends in one line naming the file (and line), with exit code 2."""

from __future__ import annotations

import json

import pytest

from cir.cli import main

GOOD = {"question": "What is the capital of France?", "choices": ["Paris", "Lyon"], "answer": 0}


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip()


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "lines, message",
    [
        ([json.dumps(GOOD), '{"question": "x", "choices": ["a", "b"], "answer": 0'], ":2: malformed JSON"),
        ([json.dumps({k: v for k, v in GOOD.items() if k != "answer"})], ":1: missing field 'answer'"),
        ([json.dumps(GOOD | {"answer": "0"})], ":1: field 'answer' must be int, got str"),
        ([json.dumps(GOOD | {"choices": "Paris"})], ":1: field 'choices' must be list, got str"),
        ([json.dumps(GOOD | {"answer": 5})], ":1: field 'answer' is 5, out of range for 2 choices"),
        ([json.dumps(GOOD | {"choices": ["Paris"]})], ":1: field 'choices' needs at least 2 entries, got 1"),
        ([json.dumps(GOOD), json.dumps(GOOD)], ":2: duplicate question (first seen on line 1)"),
        (["[1, 2]"], ":1: expected a JSON object, got list"),
        ([json.dumps(GOOD | {"facts": "Paris is the capital."})], ":1: field 'facts' must be a list of non-empty strings"),
        ([json.dumps(GOOD | {"choices": ["Paris", " "]})], ":1: field 'choices': choice 2 is empty"),
        ([json.dumps(GOOD | {"choices": ["Paris", "Lyon", " paris"]})],
         ":1: field 'choices': choice 3 (' paris') repeats choice 1"),
        ([json.dumps(GOOD | {"question": "Why? " * 4001})],
         ":1: field 'question' has a text of 20,005 characters (at most 20,000)"),
        ([json.dumps(GOOD | {"choices": ["Paris", "x" * 20_001]})],
         ":1: field 'choices' has a text of 20,001 characters (at most 20,000)"),
        ([json.dumps(GOOD), json.dumps(GOOD | {"question": "Where is \ud800?"})], ":2: lone surrogate '\\ud800'"),
        ([json.dumps(GOOD | {"probes": ["Which city is France's capital?", " "]})],
         ":1: field 'probes' must be a list of non-empty strings"),
        ([json.dumps(GOOD | {"statement": ""})], ":1: field 'statement' must be a non-empty string"),
    ],
)
def test_bad_mcq_file(tmp_path, capsys, lines, message):
    path = write(tmp_path / "facts.jsonl", lines)
    code, err = run_cli(capsys, "eval", "--mcq", path)
    assert code == 2
    assert err.startswith(f"cir: error: {path}")
    assert message in err
    assert len(err.splitlines()) == 1


def test_probes_and_statement_load(tmp_path):
    from cir.data import load_mcq

    record = GOOD | {"probes": ["Which city is France's capital?"], "statement": "The capital of France is"}
    (item,) = load_mcq(write(tmp_path / "facts.jsonl", [json.dumps(record)]))
    assert item.probes == ("Which city is France's capital?",) and item.statement == "The capital of France is"


def test_letters_format_refuses_more_than_26_choices(tmp_path, capsys):
    many = GOOD | {"question": "Which letter?", "choices": [f"choice {i}" for i in range(27)]}
    path = write(tmp_path / "facts.jsonl", [json.dumps(GOOD), json.dumps(many)])
    code, err = run_cli(capsys, "eval", "--mcq", path, "--format", "letters")
    assert code == 2 and err == f"cir: error: {path}:2: 27 choices, more than the 26 this format can letter"


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    from cir.data import load_mcq, load_texts
    from cir.unlearning.overrides import build_configs

    bom = "\ufeff"
    (tmp_path / "facts.jsonl").write_text(bom + json.dumps(GOOD) + "\n", encoding="utf-8")
    (tmp_path / "corpus.txt").write_text(bom + "First document.\nSecond.\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text(bom + "max_epochs: 3\n", encoding="utf-8")
    assert load_mcq(str(tmp_path / "facts.jsonl"))[0].question == GOOD["question"]
    assert load_texts(str(tmp_path / "corpus.txt")) == ["First document.", "Second."]
    assert build_configs(str(tmp_path / "c.yaml"))[0].max_epochs == 3


def test_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    code, err = run_cli(capsys, "eval", "--mcq", str(path))
    assert code == 2 and err == f"cir: error: {path}: empty file"


def test_not_utf8(tmp_path, capsys):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode() + b'{"question": "caf\xe9"}\n')
    code, err = run_cli(capsys, "eval", "--mcq", str(path))
    assert code == 2 and err.startswith(f"cir: error: {path}:2: bytes that are not UTF-8")


def test_missing_path(tmp_path, capsys):
    path = tmp_path / "nope.jsonl"
    code, err = run_cli(capsys, "eval", "--mcq", str(path))
    assert code == 2 and err == f"cir: error: {path}: no such file"


def test_unreadable_path(tmp_path, capsys):
    code, err = run_cli(capsys, "eval", "--mcq", str(tmp_path))
    assert code == 2 and err == f"cir: error: {tmp_path}: is a directory, expected a file"


def test_unknown_model_spec(tmp_path, capsys):
    path = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    code, err = run_cli(capsys, "eval", "--model", "no-such-model-xyz", "--mcq", path)
    assert code == 2
    assert err.startswith("cir: error: cannot load model 'no-such-model-xyz'")
    assert "HF_HUB_OFFLINE" in err and len(err.splitlines()) == 1
    assert "[" not in err and "huggingface.co" not in err  # the hub's own words add nothing offline


@pytest.mark.parametrize("spec", ["{tmp}/missing", "./missing/model", "~/no-such-cir-model", "runs/missing",
                                  "{tmp}/runs/a/b"])
def test_a_missing_model_path_is_one_line_without_the_hub(tmp_path, capsys, monkeypatch, spec):
    """A spec that can only be a path (absolute, ./, ~, two separators, or under a local
    directory: runs/missing where ./runs exists) is never asked of the hub."""
    import cir.models

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", no_hub)
    path = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    spec = spec.format(tmp=tmp_path)
    code, err = run_cli(capsys, "eval", "--model", spec, "--mcq", path)
    assert code == 2 and err == (f"cir: error: {spec}: no such model directory (a model is an alias: "
                                 f"{', '.join(cir.models.BUNDLED)}; a model directory; or a hub id such as "
                                 "HuggingFaceTB/SmolLM2-135M)")


def test_directory_without_config_is_not_a_model(tmp_path, capsys):
    path = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    code, err = run_cli(capsys, "eval", "--model", str(tmp_path), "--mcq", path)
    assert code == 2 and err == f"cir: error: {tmp_path}: not a model directory (no config.json)"


def test_text_jsonl_without_text_field(tmp_path, capsys):
    path = write(tmp_path / "corpus.jsonl", ['{"text": "fine"}', '{"body": "no text"}'])
    code, err = run_cli(capsys, "eval", "--text", path)
    assert code == 2 and err == f"cir: error: {path}:2: missing field 'text'"


def test_hub_dataset_offline(capsys):
    code, err = run_cli(capsys, "eval", "--mcq", "hf:cais/wmdp:wmdp-bio:test")
    assert code == 2
    assert err.startswith("cir: error: cannot load data set 'hf:cais/wmdp:wmdp-bio:test'")
    assert len(err.splitlines()) == 1


def test_unlearn_refuses_non_empty_out(tmp_path, capsys):
    facts = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--out", str(out))
    assert code == 2 and "output directory is not empty (use --overwrite" in err
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--set", "nonsense=1"], "--set: unknown option 'nonsense'"),
        (["--set", "budget=-1"], "budget must be > 0"),
        (["--set", "forget_loss=foo"], "forget_loss must be one of"),
        (["--method", "no_such_method"], "unknown method 'no_such_method'"),
        (["--method", ""], "cir: error: --method: empty method name (known: cir,"),
        (["--set", "batch_size=0"], "cir: error: --set: batch_size must be an integer >= 1, got 0"),
        (["--set", "batch_size=-3"], "cir: error: --set: batch_size must be an integer >= 1, got -3"),
        (["--set", "seed=abc"], "cir: error: --set: seed must be an integer, got 'abc'"),
        (["--seed", "-1"], "cir: error: --seed: seed must be an integer in [0, 2**63), got -1"),
        (["--set", "train_layers=abc"],
         "cir: error: --set: train_layers must be a list of integers or null, got 'abc'"),
        (["--set", "train_layers=[]"], "cir: error: --set: train_layers must be a non-empty list of layer numbers"),
        (["--set", "gu=maybe"], "cir: error: --set: gu must be true or false, got 'maybe'"),
        (["--set", "budget=.nan"], "cir: error: --set: budget must be a finite number, got nan"),
        (["--set", "max_epochs=1.5"], "cir: error: --set: max_epochs must be an integer, got 1.5"),
        (["--set", "max_length=0"], "cir: error: --set: max_length must be an integer >= 1, got 0"),
        (["--set", "retain_batch_size=0"], "cir: error: --set: retain_batch_size must be an integer >= 1, got 0"),
        (["--set", "cir.soft_components=0"], "cir: error: --set: soft_components must be an integer >= 1, got 0"),
        (["--method", "rmu", "--set", "layer=1.5"], "cir: error: --set: layer must be an integer or null, got 1.5"),
    ],
)
def test_unlearn_bad_options(tmp_path, capsys, overrides, message):
    facts = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--out", str(tmp_path / "run"), *overrides)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_config_yaml_unknown_key(tmp_path, capsys):
    facts = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    config = write(tmp_path / "c.yaml", ["max_epochs: 3", "cir:", "  unlearning_rat: 1.0"])
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--config", config, "--out", str(tmp_path / "r"))
    assert code == 2 and err.startswith(f"cir: error: {config}: unknown option(s) unlearning_rat")


def test_malformed_yaml(tmp_path, capsys):
    facts = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    config = write(tmp_path / "c.yaml", ["max_epochs: 3", "cir: [unclosed"])
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--config", config, "--out", str(tmp_path / "r"))
    assert code == 2 and err.startswith(f"cir: error: {config}:") and "malformed YAML" in err


def test_numbers_in_options_are_typed(tmp_path):
    from cir.unlearning.overrides import build_configs

    config = write(tmp_path / "c.yaml", ["budget: 2", "cir:", "  unlearning_rate: 1e-3"])  # YAML reads 1e-3 as text
    run, method = build_configs(config, ["retain_rate=1e-4"])
    assert run.budget == 2.0 and isinstance(run.budget, float)
    assert method.unlearning_rate == 0.001 and method.retain_rate == 0.0001


def test_config_yaml_value_out_of_range(tmp_path, capsys):
    facts = write(tmp_path / "facts.jsonl", [json.dumps(GOOD)])
    config = write(tmp_path / "c.yaml", ["batch_size: 0"])
    code, err = run_cli(capsys, "unlearn", "--forget", facts, "--config", config, "--set", "max_epochs=2",
                        "--out", str(tmp_path / "r"))
    assert code == 2 and err == f"cir: error: {config}: batch_size must be an integer >= 1, got 0"


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["mia", "--help"]])
def test_help_prints_and_exits_0(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("usage: cir")
