"""What needs a CUDA device: the model and every tensor of a run on the GPU, and the bitsandbytes
quantisation backend (skipped without one; bench/gpu_smoke.sh runs them). The bfloat16
trajectory and `cir eval --base` on the GPU are in test_precision.py and test_cli.py."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_a_bfloat16_run_stays_on_the_gpu(taught_dir, people):
    import cir
    from cir.data.general import builtin_prompts

    model, tokenizer = cir.load_model(str(taught_dir), dtype=torch.bfloat16, device="cuda")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = cir.unlearn(model, tokenizer, people[:10], retain=builtin_prompts(), heldout=builtin_prompts(),
                         watch={"kept": people[40:60]}, max_epochs=1, budget=100.0, collateral_budget=1.0,
                         progress=False, act_components=4, grad_components=4)
    assert result.kept_epoch == 1
    assert all(p.device.type == "cuda" and p.dtype == torch.bfloat16 for p in model.parameters())
    assert sum(not torch.equal(p, before[n]) for n, p in model.named_parameters()) > 0
    assert 0 < result.kept["peak_memory_mb"] <= torch.cuda.max_memory_allocated() / 2**20 + 1  # GPU memory, not the CPU's


def test_bitsandbytes_round_trip_moves_weights_by_less_than_a_step(taught):
    pytest.importorskip("bitsandbytes")
    from cir.attacks.quantization import quantize_model

    model, _ = taught
    model.cuda()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = quantize_model(model, bits=8, backend="bnb")
    assert report["weights"] > 0
    moved = [float((p - before[n]).abs().max()) for n, p in model.named_parameters() if "mlp" in n]
    assert 0 < max(moved) <= report["max_error"] + 1e-6
    assert report["max_error"] < 0.05 * max(float(p.abs().max()) for p in before.values())
