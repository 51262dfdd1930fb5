"""bench/scale.py: the architectures of real checkpoints build (on the meta device: no memory),
and a 2-layer cut runs one bfloat16 CIR epoch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
scale = pytest.importorskip("scale")


@pytest.mark.parametrize("shape,billions,layers", [("llama-3.2-1b", 1.236, 16), ("llama-3.1-8b", 8.030, 32),
                                                   ("qwen2.5-7b", 7.616, 28)])
def test_the_configs_build_on_the_meta_device(shape, billions, layers):
    from cir.architecture import mlp_projections

    model = scale.build_model(shape)
    assert all(p.device.type == "meta" and p.dtype == torch.bfloat16 for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=1e-3)  # the real counts
    config = scale.method_config(layers, cut=False, statistics="rows")
    assert len(mlp_projections(model, config.train_layers)) == 3 * len(config.train_layers)
    if shape == "llama-3.1-8b":  # the paper's own layers
        assert config.train_layers == list(range(13)) and config.loss_layers == list(range(6, 12))


def test_a_two_layer_cut_runs_one_epoch():
    figures = scale.run_shape("llama-3.2-1b", layers=2, n_facts=2, device="cpu", decompose=False)
    assert figures["layers"] == 2 and figures["train_layers"] == [0, 1]
    assert figures["weights changed"] == 6  # every trained projection moved, in bfloat16
    held, square = figures["statistics MiB (held, as d x d float32)"]
    assert 0 < held < square / 10  # the rows of a few sentences, not d x d sums
    assert figures["epoch_s_per_fact"] > 0 and figures["peak_mb"] > 0
