"""Model structure, saving/loading round trips, and the truncated forward pass."""

from __future__ import annotations

import pytest
import torch

from cir.architecture import decoder_layers, forward_until, mlp_projections, weight_grad_from
from cir.errors import InputError
from cir.training.hooks import record_outputs
from cir.models import load_model, save_model


def test_llama_projections(llama):
    modules = mlp_projections(llama, [0, 2])
    assert list(modules) == [f"model.layers.{i}.mlp.{n}" for i in (0, 2) for n in ("gate_proj", "up_proj", "down_proj")]
    assert len(decoder_layers(llama)) == 4


def test_gpt2_projections_and_transposed_update(gpt2):
    modules = mlp_projections(gpt2, [1])
    assert list(modules) == ["transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"]
    fc = modules["transformer.h.1.mlp.c_fc"]
    acts, grads = torch.randn(7, 64), torch.randn(7, 256)
    assert weight_grad_from(fc, grads, acts).shape == fc.weight.shape == (64, 256)


def test_missing_layer_is_a_clear_error(llama):
    with pytest.raises(InputError, match="layer 9 does not exist: the model has 4 layers"):
        mlp_projections(llama, [9])


def test_unsupported_architecture():
    with pytest.raises(InputError, match="unsupported architecture Linear"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_forward_until_stops_after_the_layer(llama):
    ids = torch.randint(0, 100, (2, 5))
    seen = {}
    layers = {str(i): layer for i, layer in enumerate(decoder_layers(llama))}
    with record_outputs(layers, seen, detach=True):
        forward_until(llama, 1, input_ids=ids)
    assert sorted(seen) == ["0", "1"]
    full = {}
    with record_outputs(layers, full, detach=True):
        llama(input_ids=ids)
    torch.testing.assert_close(seen["1"], full["1"])
    assert not llama.model.layers[2]._forward_hooks  # the stopping hook was removed


def test_saved_directory_loads_with_auto_classes(tmp_path, llama, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    save_model(llama, tokenizer, tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    ids = torch.randint(0, 100, (1, 6))
    torch.testing.assert_close(reloaded(input_ids=ids).logits, llama(input_ids=ids).logits)
    model, tok = load_model(str(tmp_path))
    assert tok.pad_token is not None and type(model).__name__ == "LlamaForCausalLM"


def test_gpt_neox_projections(tokenizer):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4))
    assert list(mlp_projections(model, [1])) == ["gpt_neox.layers.1.mlp.dense_h_to_4h",
                                                 "gpt_neox.layers.1.mlp.dense_4h_to_h"]
    assert len(decoder_layers(model)) == 2


def test_the_machine_is_named_with_its_vector_extensions():
    """Tables name the CPU and the extensions that change a run's arithmetic (AVX2 against AVX-512)."""
    from cir.machine import cpu_flags, describe

    zen3 = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
    zen4 = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    assert cpu_flags(zen3) == ("AMD EPYC 7B13", {"fpu", "sse2", "avx", "avx2", "fma"})
    assert describe(zen3).startswith("AMD EPYC 7B13 (avx2), ")
    assert describe(zen4).startswith("AMD EPYC 9B14 (avx2, avx512f, avx512_bf16), ")
    assert "torch thread" in describe(zen4)
