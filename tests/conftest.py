"""Shared fixtures: tiny randomly initialised models (seconds) and the bundled real model."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from cir.data.synthetic import generate_people


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled model's tokenizer (converts the GGUF file once into the user cache)."""
    from transformers import AutoTokenizer

    from cir.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    tok.pad_token = tok.pad_token or tok.eos_token
    tok.padding_side = "right"
    return tok


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=layers, n_head=4, n_positions=128)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def llama(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture
def gpt2(tokenizer):
    return tiny_gpt2(len(tokenizer))


@pytest.fixture(scope="session")
def people():
    """40 synthetic facts: 8 invented people x 5 attributes."""
    return generate_people(8, seed=0)


@pytest.fixture(scope="session")
def taught_dir(tmp_path_factory, tokenizer, people):
    """A tiny Llama taught the synthetic facts, saved as an HF directory."""
    from cir.finetune import finetune
    from cir.models import save_model

    model = tiny_llama(len(tokenizer), seed=1)
    sentences = [s for item in people for s in item.sentences()]
    finetune(model, tokenizer, sentences, epochs=40, lr=3e-3, batch_size=16, seed=0, progress=False)
    path = tmp_path_factory.mktemp("taught")
    save_model(model, tokenizer, path)
    return path


@pytest.fixture
def taught(taught_dir):
    from cir.models import load_model

    return load_model(str(taught_dir))
