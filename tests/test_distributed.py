"""Two CPU processes (torchrun, gloo) against one: the same global batches give the same weights.

Tolerance: every weight within 1e-5 of the one-process run, relative to the tensor's largest
entry (1e-4 for `teach`; 1e-3 for CIR with its small-model defaults, see the cases). The runs differ only in float summation order (the shards' sums are
added by the all-reduce), so unlearning's normalised SGD steps agree to float32 rounding;
Adam (`teach`) divides each entry by its running gradient scale, which magnifies rounding in
entries whose gradients are near zero.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from cir.cli import main
from cir.data.synthetic import write_mcq

TOLERANCE = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], tmp_path, processes: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"CIR_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                        "TOKENIZERS_PARALLELISM": "false"} | (env or {})
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "cir.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same_weights(a, b, tolerance: float = TOLERANCE) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for name in first:
        scale = first[name].abs().max().clamp_min(1e-12)
        assert ((first[name] - second[name]).abs().max() / scale) <= tolerance, name


def changed(a, b) -> int:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return sum(not torch.equal(first[n], second[n]) for n in first)


@pytest.fixture
def inputs(tmp_path, people):
    forget = tmp_path / "forget.jsonl"
    write_mcq(people[:10], forget)
    n_sentences = sum(len(item.sentences()) for item in people[:10])
    assert n_sentences % 16 not in (1,), "the last batch must hold a row for each process"
    retain = tmp_path / "retain.txt"
    retain.write_text("\n".join(s for item in people[10:] for s in item.sentences()) + "\n")
    return str(forget), str(retain)


PAPER_RULE = ["--set", "forget_loss=neg_cross_entropy", "--set", "update_tokens=all", "--set", "retain_components=0"]


@pytest.mark.parametrize("method,options,tolerance", [
    ("cir", PAPER_RULE, TOLERANCE), ("npo", [], TOLERANCE), ("cir", PAPER_RULE + ["--fsdp"], TOLERANCE),
    ("gradient_difference", ["--fsdp"], TOLERANCE),
    # CIR's defaults (true logit, update from the answer-predicting positions only): the update
    # is a sum over a few tokens per batch, so the summation-order differences in the summed
    # statistics' principal components weigh more in it
    ("cir", [], 1e-3), ("cir", ["--fsdp"], 1e-3)])
def test_two_processes_unlearn_to_the_same_weights_as_one(method, options, tolerance, taught_dir, inputs, tmp_path,
                                                          monkeypatch):
    forget, retain = inputs
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    common = ["unlearn", "--model", str(taught_dir), "--forget", forget, "--retain", retain, "--method", method,
              "--quiet", "--set", "max_epochs=2", "--set", "budget=10", "--set", "batch_size=16",
              "--set", "retain_batch_size=8", "--set", "collateral_budget=1"]
    if method == "cir":
        common += ["--set", "act_components=4", "--set", "grad_components=4"]
    one_process = [o for o in options if o != "--fsdp"]
    assert main(common + one_process + ["--out", str(tmp_path / "one")]) == 0
    launch(common + options + ["--out", str(tmp_path / "two")], tmp_path)

    assert changed(taught_dir, tmp_path / "two") > 0  # the processes really trained
    assert_same_weights(tmp_path / "one", tmp_path / "two", tolerance)
    rows = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows[-1]["peak_memory_mb_per_process"]) == 2
    assert all(r["peak_memory_mb"] > 0 for r in rows)
    config = (tmp_path / "two" / "config.yaml").read_text()
    assert "processes: 2" in config


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]])
def test_two_processes_teach_to_the_same_weights_as_one(sharding, taught_dir, inputs, tmp_path, monkeypatch):
    forget, _ = inputs
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    common = ["teach", "--model", str(taught_dir), "--facts", forget, "--epochs", "2", "--lr", "1e-3"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    launch(common + sharding + ["--out", str(tmp_path / "two")], tmp_path)
    assert changed(taught_dir, tmp_path / "two") > 0
    assert_same_weights(tmp_path / "one", tmp_path / "two", tolerance=1e-4)


def test_a_last_batch_too_small_to_shard_joins_the_one_before():
    from cir.training.batches import chunks

    assert chunks(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert chunks(9, 4, min_size=2) == [slice(0, 4), slice(4, 9)]  # 1 row cannot feed 2 processes
    assert chunks(3, 4, min_size=8) == [slice(0, 3)]  # a single batch stays whole


def test_one_process_never_starts_a_process_group(monkeypatch):
    from cir import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    grads = {"w": torch.ones(2, 2)}
    assert not distributed.launched()
    assert distributed.weighted_sum(grads, 0.5) is grads and distributed.share(7) == 1.0
    assert distributed.shard_rows(5) == slice(0, 5)
    assert not torch.distributed.is_initialized()


def test_relearning_attack_under_fsdp_matches_one_process(taught_dir, inputs, people, tmp_path, monkeypatch, capsys):
    forget, _ = inputs
    train = tmp_path / "train.jsonl"
    write_mcq(people[20:40], train)
    monkeypatch.setenv("CIR_CACHE", str(tmp_path / "cache"))
    common = ["attack", "relearn", "--model", str(taught_dir), "--train", str(train), "--eval", forget,
              "--epochs", "2", "--lr", "1e-3", "--params", "all", "--json"]
    assert main(common) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    two = json.loads(launch(common + ["--fsdp"], tmp_path).stdout.strip().splitlines()[-1])
    assert one["per_epoch"] == two["per_epoch"]
    assert one["losses"] == pytest.approx(two["losses"], rel=1e-4)
    assert one["losses"][1] < one["losses"][0]  # it trained


def test_fsdp_refuses_what_it_cannot_shard(tmp_path, capsys):
    from cir.errors import InputError
    from cir.unlearning.overrides import build_configs
    from cir.unlearning.run_config import fsdp_limits

    for overrides, message in [(["disruption=kl"], "disruption=kl"), (["gu=true"], "gu=true"),
                               (["method=shred"], "method shred")]:
        with pytest.raises(InputError, match=message):
            fsdp_limits(*build_configs(overrides=overrides))
    fsdp_limits(*build_configs())  # CIR with the defaults shards
    code = main(["unlearn", "--forget", "capitals", "--fsdp", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--fsdp needs several processes" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_fewer_gpus_than_processes_means_the_cpu(monkeypatch):
    from cir import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for count, per_process in ((1, False), (2, True), (8, True)):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        assert distributed.gpus_for_each_process() is per_process
        assert (distributed.cpu_fallback_notice() is None) is per_process
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.cpu_fallback_notice() == ("cir: 2 processes on this machine but 1 GPU(s), one per process "
                                                 "needed: running every process on the CPU (gloo)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.cpu_fallback_notice() is None  # no GPU at all: the CPU, as expected, without a word


def test_two_processes_on_a_machine_with_one_gpu_run_on_the_cpu(taught_dir, inputs, tmp_path):
    """Each process sees one CUDA device (faked at start-up: this test needs no GPU); both run on
    the CPU with gloo instead of both asking for a GPU of their own, and the main process says so."""
    forget, retain = inputs
    fake = tmp_path / "one_gpu"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text("import torch\ntorch.cuda.is_available = lambda: True\n"
                                           "torch.cuda.device_count = lambda: 1\n")
    out = tmp_path / "two"
    done = launch(["unlearn", "--model", str(taught_dir), "--forget", forget, "--retain", retain, "--quiet",
                   "--set", "max_epochs=1", "--set", "budget=10", "--set", "batch_size=16", "--set", "collateral_budget=1",
                   "--set", "act_components=4", "--set", "grad_components=4", "--out", str(out)], tmp_path,
                  env={"PYTHONPATH": os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")]))})
    assert done.stderr.count("running every process on the CPU (gloo)") == 1
    assert changed(taught_dir, out) > 0
    assert "processes: 2" in (out / "config.yaml").read_text()
