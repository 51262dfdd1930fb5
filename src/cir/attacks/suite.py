"""The attack suite: relearning and quantisation, each on its own copy of the model, over a grid.

The T/V protocol of the CIR paper (after Deeb & Roger): the forget questions are split into
T, which the attacker trains on, and V, which no attack sees. Every attack is measured on V
with the cloze prompt and in the worst held-out probe (the probe battery), and on other
topics (collateral damage).

A grid of attacks (GRIDS) sweeps what an attacker chooses: the learning rate, the weights
trained (the MLPs, all, LoRA adapters), the epochs, and the text (T's fact sentences, general
text, other facts: Łucki et al. recover knowledge from unrelated text), and 4- and 8-bit
rounding. The headline of a grid is its worst attack: the highest V in the worst probe.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass

from tqdm.auto import tqdm

from cir.attacks.quantization import quantize_model
from cir.attacks.relearning import relearn, split_forget
from cir.data import given
from cir.data.mcq import MCQ
from cir.errors import InputError
from cir.fields import check_fields
from cir.protocol import accuracies, measure, worst_probe

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


def attack_copy(model):
    """A copy of `model` for an attack to change, in float32: the attacker trains in full
    precision (in bfloat16, Adam's small steps would round away and the attack would be
    weaker than the one a float32 model gets)."""
    from cir.models import LOW_PRECISION

    copied = copy.deepcopy(model)
    if any(p.dtype in LOW_PRECISION for p in copied.parameters()):
        copied.float()
    return copied


RELEARN_DATA = {"T": "T", "general": "general text", "kept": "kept facts"}
PARAMS = {"mlp": "MLP", "all": "all weights", "lora": "LoRA r8"}


@dataclass(frozen=True)
class Attack:
    """One attack of a grid: relearning (`data`: T's fact sentences, general text, or kept facts
    as many as T; `params`, Adam at `lr` for `epochs`, V read at the best epoch) or round-to-nearest
    quantisation to `bits`."""

    kind: str = "relearn"  # relearn | quantize
    data: str = "T"
    params: str = "mlp"
    lr: float = 3e-5
    epochs: int = 6
    bits: int = 4

    def __post_init__(self):
        if self.kind not in ("relearn", "quantize"):
            raise InputError(f"unknown attack kind '{self.kind}' (relearn, quantize)")
        if self.data not in RELEARN_DATA or self.params not in PARAMS:
            raise InputError(f"unknown relearning data '{self.data}' or parameters '{self.params}' "
                             f"(data: {', '.join(RELEARN_DATA)}; parameters: {', '.join(PARAMS)})")
        if self.bits not in (4, 8):
            raise InputError(f"quantisation bits must be 4 or 8, got {self.bits}")

    @property
    def label(self) -> str:
        if self.kind == "quantize":
            return f"{self.bits}-bit quantisation"
        return f"relearning on {RELEARN_DATA[self.data]} ({PARAMS[self.params]}, lr {self.lr:g}, {self.epochs} epochs)"

    @property
    def key(self) -> str:
        """The attack's name in a run's attacks.json (cir.attacks.record)."""
        if self.kind == "quantize":
            return f"quantize:{self.bits}bit"
        return f"relearn:{self.data}:{self.params}:{self.lr:g}:{self.epochs}"

    def to_json(self) -> dict:
        return {"label": self.label, "key": self.key} | asdict(self)


def _relearning(data: str, params: str, lrs, epochs=(6, 12)) -> list[Attack]:
    return [Attack("relearn", data, params, lr, n) for lr in lrs for n in epochs]


# `suite`: the demo's first two attacks (cheap: the comparison's search reads them at every
# trial); `default`: the relearning attack that brought back the most on T and 4-bit, what the
# demo's time allows on 2 CPU cores; `wide`: six attacks, the strongest of each axis, which the
# judging seeds meet; `full`: the whole grid (docs/sweep.md, "The attack grid and the retain model")
GRIDS: dict[str, tuple[Attack, ...]] = {
    "suite": (Attack(), Attack("quantize", bits=4)),
    "default": (Attack(params="all", lr=1e-4, epochs=12), Attack("quantize", bits=4)),
    "wide": (
        Attack(lr=3e-4),
        Attack(params="all", lr=1e-4, epochs=12),
        Attack(params="lora", lr=1e-3),
        Attack(data="general", params="all", lr=1e-4),
        Attack(data="kept", params="mlp", lr=3e-4),
        Attack("quantize", bits=4),
    ),
    "full": tuple(
        _relearning("T", "mlp", (1e-5, 3e-5, 1e-4, 3e-4, 1e-3))
        + _relearning("T", "all", (1e-5, 3e-5, 1e-4, 3e-4, 1e-3))
        + _relearning("T", "lora", (1e-4, 3e-4, 1e-3, 3e-3))
        + _relearning("general", "all", (1e-5, 1e-4, 1e-3), epochs=(6,))
        + _relearning("kept", "mlp", (1e-4, 3e-4, 1e-3), epochs=(6,))
        + [Attack("quantize", bits=4), Attack("quantize", bits=8)]),
}


def grid(name: str) -> tuple[Attack, ...]:
    if name not in GRIDS:
        raise InputError(f"unknown attack grid '{name}' (known: {', '.join(GRIDS)})")
    return GRIDS[name]


def attack_texts(train: list[MCQ], kept: list[MCQ] = (), general: list[str] = (), seed: int = 0) -> dict[str, list]:
    """What each relearning data trains on: T; general text; as many kept facts as T has, drawn
    with `seed` (the kept facts the method was not scored on)."""
    kept = list(kept)
    random.Random(seed).shuffle(kept)
    return {"T": list(train), "general": list(general), "kept": kept[: len(train)]}


def run_attack(model, tokenizer, attack: Attack, data: dict[str, list], held_out: list[MCQ],
               topics: dict[str, list[MCQ]], seed: int = 0, progress: bool = False) -> dict:
    """`attack` on a copy of `model` (left as it is): a row as `measure` makes it, with the
    attack's seconds under "_seconds"; relearning's V is its best epoch (V worst at least that),
    its own result kept under "_relearn"."""
    start = time.perf_counter()
    attacked = attack_copy(model)
    try:
        if attack.kind == "quantize":
            quantize_model(attacked, bits=attack.bits)
            return measure(attacked, tokenizer, topics, held_out) | {"_seconds": time.perf_counter() - start}
        texts = data.get(attack.data) or []
        if not texts:
            raise InputError(f"the attack '{attack.label}' has no {RELEARN_DATA[attack.data]} to train on")
        items, extra = (texts, None) if attack.data != "general" else ([], texts)
        result = relearn(attacked, tokenizer, items, held_out, epochs=attack.epochs, lr=attack.lr,
                         optimizer="adam", params=attack.params, seed=seed, texts=extra, progress=progress)
        best = result["max_accuracy"]
        return (accuracies(attacked, tokenizer, topics) | {"V": best}
                | worst_probe(attacked, tokenizer, held_out, floor=best) | {"_relearn": result}
                | {"_seconds": time.perf_counter() - start})
    finally:
        del attacked


def run_grid(model, tokenizer, attacks: tuple[Attack, ...], data: dict[str, list], held_out: list[MCQ], *,
             topics: dict[str, list[MCQ]], seed: int = 0, progress: bool = False, cache=None) -> dict[str, dict]:
    """Every attack of `attacks` on its own copy of `model`: {label: row}. `cache`: a
    ReferenceRows to read rows from and keep them in (a reference model's: no unlearning changes
    it, so its rows hold for every run on the same split)."""
    rows = {}
    bar = tqdm(attacks, desc="attacks", disable=not progress, leave=False)
    for attack in bar:
        bar.set_postfix_str(attack.label)
        row = cache.get(attack) if cache is not None else None
        if row is None:
            row = run_attack(model, tokenizer, attack, data, held_out, topics, seed)
            if cache is not None:
                cache.put(attack, row)
        rows[attack.label] = row
    return rows


class ReferenceRows:
    """Attack rows of a reference model, kept in one JSON file under the user cache, keyed by the
    model's fingerprint, the questions (T's data, V, the topics), the seed and each attack."""

    VERSION = 1  # raised when an attack or a measurement changes what a row holds

    def __init__(self, model, data: dict[str, list], held_out: list[MCQ], topics: dict[str, list[MCQ]], seed: int):
        from cir.data.general import fingerprint
        from cir.models import cache_dir

        def questions(items) -> list:
            return [item.question if isinstance(item, MCQ) else item for item in items]

        what = {"version": self.VERSION, "model": fingerprint(model), "seed": seed, "V": questions(held_out),
                "data": {name: questions(items) for name, items in data.items()},
                "topics": {name: questions(items) for name, items in topics.items()}}
        key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
        self.path = cache_dir() / "attacks" / f"{what['model']}-{key}.json"
        self.rows = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def _key(attack: Attack) -> str:
        return json.dumps(asdict(attack), sort_keys=True)

    def get(self, attack: Attack) -> dict | None:
        return self.rows.get(self._key(attack))

    def put(self, attack: Attack, row: dict) -> None:
        from cir.outputs import write_json

        self.rows[self._key(attack)] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.rows)


def worst_attack(rows: dict[str, dict]) -> str:
    """The label of the attack with the highest V in the worst probe (the first of a tie)."""
    return max(rows, key=lambda label: rows[label]["V worst"])


def suite(model, tokenizer, train: list[MCQ], held_out: list[MCQ], *, topics: dict[str, list[MCQ]] | None = None,
          config: AttackConfig | None = None, attacks: tuple[str, ...] = ATTACKS, progress: bool = False) -> dict:
    """Run `attacks` (relearn: Adam on every MLP at the config's rate, trained on T's fact
    sentences; quantize: round-to-nearest to the config's bits), each on its own copy: `model` is
    left as it is. Returns {attack: row}, rows as `run_attack` makes them."""
    config = config or AttackConfig()
    train, held_out = given.questions(train, "train"), given.questions(held_out, "held_out")
    topics = given.named(topics, "topics", given.questions)
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)} (known: {', '.join(ATTACKS)})")
    chosen = {"relearn": Attack(lr=config.relearn_lr, epochs=config.relearn_epochs),
              "quantize": Attack("quantize", bits=config.quantize_bits)}
    return {name: run_attack(model, tokenizer, chosen[name], {"T": train}, held_out, topics, config.seed, progress)
            for name in attacks}
