"""The bundled SmolLM2-135M: it loads offline, and knows what README says it knows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.real_model
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def smollm():
    from cir.models import load_model

    return load_model("smollm2-135m")


def readme_accuracy(topic: str) -> float:
    match = re.search(rf"^\| {topic} \| \d+ \| ([0-9.]+) \|", README.read_text(), re.M)
    assert match, f"README has no accuracy row for {topic}"
    return float(match.group(1))


def test_bundled_model_loads_as_llama(smollm, tmp_path):
    from transformers import AutoModelForCausalLM

    from cir.architecture import decoder_layers, mlp_projections
    from cir.models import save_model

    model, tokenizer = smollm
    assert getattr(model, "hf_quantizer", None) is None  # dequantised: a plain float32 model
    save_model(model, tokenizer, tmp_path)
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.num_hidden_layers == 30
    assert type(model).__name__ == "LlamaForCausalLM"
    assert len(decoder_layers(model)) == 30
    assert len(mlp_projections(model, range(13))) == 39
    assert tokenizer("Paris").input_ids  # no BOS is added by this tokenizer
    assert tokenizer.bos_token_id not in tokenizer("Paris is the capital of France.").input_ids


def test_eval_cli_gives_the_readme_accuracy(capsys):
    from cir.cli import main

    assert main(["eval", "--model", "smollm2-135m", "--mcq", "capitals", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["mcq"]["capitals"]["n"] == 48
    assert result["mcq"]["capitals"]["accuracy"] == pytest.approx(readme_accuracy("capitals"), abs=0.0011)


def test_cir_moves_the_real_model_on_a_few_facts(smollm, tmp_path):
    """Two epochs on 8 capitals: the trained MLPs change, the forget loss falls, nothing else moves."""
    import torch

    from cir.data import load_mcq
    from cir.unlearning.loop import run_unlearning
    from cir.data.general import general_text_split
    from cir.unlearning.run_config import RunConfig
    from cir.methods.cir import CIRConfig

    model, tokenizer = smollm
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    retain, heldout = general_text_split(model, tokenizer)
    items = load_mcq("capitals")[:8]
    result = run_unlearning(model, tokenizer, items, retain[:16], heldout[:16],
                            RunConfig(max_epochs=2, budget=10.0, eval_forget=False), CIRConfig(unlearning_rate=1.0),
                            progress=False)
    assert result.metrics[2]["forget_loss"] < result.metrics[1]["forget_loss"]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trained = {f"model.layers.{i}.mlp.{m}.weight" for i in result.method_config.train_layers
               for m in ("gate_proj", "up_proj", "down_proj")}
    assert changed == trained


def test_capitals_need_the_question(smollm):
    """The capitals' wrong choices are other capitals, so the answer alone does not give it away:
    leaving the question out scores near chance, asking it scores high."""
    from cir.data import load_mcq
    from cir.evaluation.scoring import evaluate_mcq

    model, tokenizer = smollm
    items = load_mcq("capitals")
    assert evaluate_mcq(model, tokenizer, items, "answer_only").accuracy < 0.35
    assert evaluate_mcq(model, tokenizer, items, "cloze").accuracy > 0.85
