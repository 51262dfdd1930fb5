"""Shared fixtures: tiny randomly initialised models (seconds) and the bundled real model.

`CIR_TEST_SEED=N` shifts every seed of the tiny models and the synthetic facts (another draw
of the same fixtures, as another CPU would give); `CIR_TEST_THREADS=N` runs the tiny models
on N threads instead of one. `bin/test-matrix` runs the fast tier over several of each.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from cir.data.synthetic import generate_people

TEST_SEED = int(os.environ.get("CIR_TEST_SEED", "0"))
TEST_THREADS = int(os.environ.get("CIR_TEST_THREADS", "1"))


def seeded(seed: int) -> int:
    """A fixture's seed under this run's CIR_TEST_SEED (0 leaves it unchanged)."""
    return seed + 1000 * TEST_SEED


def _training_corpus() -> list[str]:
    from cir.data.general import builtin_prompts
    from cir.data.synthetic import ATTRIBUTES

    people = generate_people(60, seed=0, question_form="cloze")
    texts = [s for item in people for s in item.sentences()] + [item.question for item in people]
    texts += [f"Question: {item.question}\nAnswer: {c}" for item in people[:80] for c in item.choices]
    texts += builtin_prompts() + [v for _, _, pool in ATTRIBUTES.values() for v in pool]
    return texts


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: skipped where there is none (bench/gpu_smoke.sh runs them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    """A small byte-level BPE tokenizer (1,000 tokens) trained on the project's own text, so that
    tiny models are not dominated by a 49k-token output layer. It adds a BOS token, like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_training_corpus(), trainer)
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   padding_side="right")


def tiny_llama(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seeded(seed))
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0, layers: int = 4):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seeded(seed))
    config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=layers, n_head=4, n_positions=128)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    """A one-layer random Llama with a context of 256 tokens, saved as an HF directory."""
    from cir.models import save_model

    path = tmp_path_factory.mktemp("tiny")
    save_model(tiny_llama(len(tokenizer), layers=1), tokenizer, path)
    return path


@pytest.fixture
def llama(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture
def gpt2(tokenizer):
    return tiny_gpt2(len(tokenizer))


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one thread (and do not fight a busy machine for cores);
    CIR_TEST_THREADS changes that, to check that nothing depends on it."""
    previous = torch.get_num_threads()
    if request.node.get_closest_marker("real_model") is None:
        torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def people():
    """80 synthetic facts: 16 invented people x 5 attributes."""
    return generate_people(16, seed=seeded(0), question_form="cloze")


@pytest.fixture(scope="session")
def taught_dir(tmp_path_factory, tokenizer, people):
    """A tiny Llama taught the synthetic facts, saved as an HF directory: 30 epochs, then more
    rounds of 10 until it answers at least 90% of them, whatever the draw of the fixtures
    (a draw that reaches 0.95 in 30 epochs, as the default one does, gets no more)."""
    from cir.evaluation.scoring import evaluate_cloze
    from cir.training.finetune import finetune
    from cir.models import save_model

    model = tiny_llama(len(tokenizer), seed=1)
    sentences = [s for item in people for s in item.sentences()]
    finetune(model, tokenizer, sentences, epochs=30, lr=3e-3, batch_size=16, seed=seeded(0), progress=False)
    for round in range(1, 6):
        if evaluate_cloze(model, tokenizer, people).accuracy >= 0.9:
            break
        finetune(model, tokenizer, sentences, epochs=10, lr=3e-3, batch_size=16, seed=seeded(round), progress=False)
    path = tmp_path_factory.mktemp("taught")
    save_model(model, tokenizer, path)
    return path


@pytest.fixture
def taught(taught_dir):
    from cir.models import load_model

    return load_model(str(taught_dir))


@pytest.fixture
def unwritable(tmp_path):
    """A directory in which no file can be created (as root, where modes do not bind: sysfs)."""
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    for candidate in (read_only, Path("/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            yield candidate
            break
        os.close(fd)
        os.unlink(probe)
    else:
        pytest.skip("no unwritable directory on this machine")
    read_only.chmod(0o755)
