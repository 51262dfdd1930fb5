"""What an attack is: a configured change to a copy of a model's weights that tries to bring
forgotten facts back, registered by kind.

An attack is a frozen dataclass whose fields are its options, registered with
`@register_attack("kind")`. It says what it is (`label`, `key`) and does one thing, `apply`:
change the model it is given, in place, and return what it saw on the way (an AttackOutcome).
Measuring the model afterwards, on a copy, over a grid, against references, is the grid's work
(cir.attacks.grids), the same for every kind; so a new attack is one file plus a grid entry, and
it reaches `cir attack KIND`, `cir demo`, `cir compare` and the API with no other edit
(docs/extending.md).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass
from typing import ClassVar

from cir.data.mcq import MCQ
from cir.errors import InputError, OptionTypeError
from cir.registry import registrar

ATTACKS: dict[str, type[Attack]] = {}
# `@register_attack("kind")`: an Attack subclass under `kind` (a second class of one kind is refused)
register_attack = registrar(ATTACKS, "attack", attribute="kind")


@dataclass(frozen=True)
class AttackInputs:
    """What an attack may use besides the model. `texts`: what a training attack may train on, by
    name ("T": T's questions, whose fact sentences it trains on; "general": general text; "kept":
    kept facts as many as T); `held_out`: V, which the attack must not train on (a relearning
    attack reads it each epoch, as an attacker choosing its stopping point would)."""

    texts: dict[str, list]
    held_out: list[MCQ]
    seed: int = 0
    progress: bool = False


@dataclass
class AttackOutcome:
    """What `apply` saw: `best`, V's best reading during the attack (an MCQResult; a relearning
    attack's best epoch), which the row reports when higher; `record`, the attack's own account
    (kept in the row and in a run's attacks.json)."""

    best: object | None = None
    record: dict | None = None


@dataclass(frozen=True)
class Attack:
    """The base of every attack: its fields are its options."""

    kind: ClassVar[str] = ""

    @property
    def label(self) -> str:
        """The attack in words, as tables name it."""
        return f"{self.kind} ({', '.join(f'{k} {v}' for k, v in asdict(self).items())})"

    @property
    def key(self) -> str:
        """A short stable name (a run's attacks.json, journals, caches)."""
        return ":".join([self.kind] + [f"{v:g}" if isinstance(v, float) else str(v) for v in asdict(self).values()])

    def apply(self, model, tokenizer, inputs: AttackInputs) -> AttackOutcome:
        """Change `model` in place; what was seen on the way."""
        raise NotImplementedError

    def to_json(self) -> dict:
        return {"label": self.label, "key": self.key, "kind": self.kind} | asdict(self)


def attack_names() -> list[str]:
    return list(ATTACKS)


def make_attack(kind: str, **options) -> Attack:
    """The attack of `kind` with `options` (its fields; the rest at their defaults)."""
    if kind not in ATTACKS:
        raise InputError(f"unknown attack '{kind}' (known: {', '.join(ATTACKS)})")
    cls = ATTACKS[kind]
    unknown = set(options) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise OptionTypeError(f"the attack '{kind}' has no option {', '.join(sorted(unknown))} "
                         f"(its options: {', '.join(f.name for f in dataclasses.fields(cls)) or 'none'})")
    return cls(**options)


def attack_from_json(data: dict) -> Attack:
    """An attack from its to_json()."""
    fields = {key: value for key, value in data.items() if key not in ("label", "key", "kind")}
    return make_attack(data["kind"], **fields)


def attack_copy(model):
    """A copy of `model` for an attack to change, in float32: the attacker trains in full
    precision (in bfloat16, Adam's small steps would round away and the attack would be
    weaker than the one a float32 model gets)."""
    from cir.models import LOW_PRECISION

    copied = copy.deepcopy(model)
    if any(p.dtype in LOW_PRECISION for p in copied.parameters()):
        copied.float()
    return copied
