"""The attack suite: relearning on T and quantisation, each on its own copy of the model.

The T/V protocol of the CIR paper (after Deeb & Roger): the forget questions are split into
T, which the attacker trains on, and V, which no attack sees. Every attack is measured on V
with the cloze prompt and in the worst held-out probe (the probe battery), and on other
topics (collateral damage).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from cir.attacks.probes import evaluate_battery
from cir.attacks.quantization import quantize_model
from cir.attacks.relearning import relearn, split_forget
from cir.data import given
from cir.data.mcq import MCQ
from cir.evaluation import evaluate_mcq
from cir.fields import check_fields

ATTACKS = ("relearn", "quantize")


@dataclass
class AttackConfig:
    """The suite's settings, shared by `cir demo` and `cir compare`."""

    split_ratio: float = 0.5  # share of the forget questions the attacker trains on (T); the rest is V
    relearn_epochs: int = 6
    relearn_lr: float = 3e-5  # Adam on every MLP: stronger than the paper's 1e-5 over 10 epochs
    quantize_bits: int = 4
    seed: int = 0  # draws the T/V split and seeds the relearning

    def __post_init__(self):
        check_fields(self)
        if not 0 < self.split_ratio < 1:
            raise ValueError(f"split_ratio must be between 0 and 1, got {self.split_ratio}")
        if self.relearn_epochs < 1 or self.relearn_lr <= 0:
            raise ValueError(f"relearning needs relearn_epochs >= 1 and relearn_lr > 0, got {self.relearn_epochs} "
                             f"and {self.relearn_lr}")
        if self.quantize_bits not in (4, 8):
            raise ValueError(f"quantize_bits must be 4 or 8, got {self.quantize_bits}")

    def split(self, items: list[MCQ]) -> tuple[list[MCQ], list[MCQ]]:
        """(T, V), drawn with the seed."""
        return split_forget(items, self.split_ratio, self.seed)


def accuracies(model, tokenizer, sets: dict[str, list[MCQ]]) -> dict[str, float]:
    return {name: evaluate_mcq(model, tokenizer, items).accuracy for name, items in sets.items()}


def worst_probe(model, tokenizer, held_out: list[MCQ], floor: float = 0.0) -> dict:
    """V in the worst held-out probe (at least `floor`: an attack's best cloze epoch)."""
    battery = evaluate_battery(model, tokenizer, held_out)
    return {"V worst": max(battery.worst_accuracy, floor), "_probes": battery.to_json()}


def measure(model, tokenizer, topics: dict[str, list[MCQ]], held_out: list[MCQ]) -> dict:
    """A row: each topic's accuracy, V's (cloze) and V in the worst held-out probe; a bfloat16 or
    float16 model's weights are read in float32 (as the stop rule reads them), so a row is the
    same whichever precision the model is held in."""
    from cir.loop import in_float32

    with in_float32(model):
        row = accuracies(model, tokenizer, topics)
        row["V"] = evaluate_mcq(model, tokenizer, held_out).accuracy
        return row | worst_probe(model, tokenizer, held_out)


def attack_copy(model):
    """A copy of `model` for an attack to change, in float32: the attacker trains in full
    precision (in bfloat16, Adam's small steps would round away and the attack would be
    weaker than the one a float32 model gets)."""
    from cir.loop import LOW_PRECISION

    copied = copy.deepcopy(model)
    if any(p.dtype in LOW_PRECISION for p in copied.parameters()):
        copied.float()
    return copied


def suite(model, tokenizer, train: list[MCQ], held_out: list[MCQ], *, topics: dict[str, list[MCQ]] | None = None,
          config: AttackConfig | None = None, attacks: tuple[str, ...] = ATTACKS, progress: bool = False) -> dict:
    """Run `attacks` (relearn: Adam on every MLP, trained on T's fact sentences; quantize:
    round-to-nearest), each on its own copy: `model` is left as it is. Returns {attack: row},
    rows as `measure` makes them; relearning's V is its best epoch, and its row keeps the
    attack's own result under "_relearn"."""
    config = config or AttackConfig()
    train, held_out = given.questions(train, "train"), given.questions(held_out, "held_out")
    topics = given.named(topics, "topics", given.questions)
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)} (known: {', '.join(ATTACKS)})")
    rows = {}
    if "relearn" in attacks:
        relearned = attack_copy(model)
        result = relearn(relearned, tokenizer, train, held_out, epochs=config.relearn_epochs, lr=config.relearn_lr,
                         optimizer="adam", params="mlp", seed=config.seed, progress=progress)
        best = result["max_accuracy"]
        rows["relearn"] = (accuracies(relearned, tokenizer, topics) | {"V": best}
                           | worst_probe(relearned, tokenizer, held_out, floor=best) | {"_relearn": result})
        del relearned
    if "quantize" in attacks:
        quantized = attack_copy(model)
        quantize_model(quantized, bits=config.quantize_bits)
        rows["quantize"] = measure(quantized, tokenizer, topics, held_out)
    return rows
