"""Round-to-nearest weight quantisation, an attack that can undo small weight changes.

`rtn` (pure torch, any device): symmetric per-group quantisation of every Linear (and GPT-2
Conv1D) weight in the decoder layers, written back dequantised, in place. Each group of
`group_size` consecutive input weights gets scale = max|w| / (2^(bits-1) - 1), so the error
of each weight is at most scale / 2.
`bnb` (CUDA only): bitsandbytes' blockwise 8-bit or NF4 4-bit round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


from cir.architecture import decoder_layers, is_transposed
from cir.evaluation.probes import probe_mcq
from cir.attacks.base import Attack, AttackInputs, AttackOutcome, register_attack
from cir.data import given
from cir.errors import InputError, OptionError


def quantize_tensor(weight: torch.Tensor, bits: int, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(dequantised weight, per-group scale of shape (rows, groups)) for a 2-D (out, in) weight."""
    if bits not in (4, 8):
        raise InputError(f"bits must be 8 or 4, got {bits}")
    if group_size < 1:
        raise InputError(f"group size must be >= 1, got {group_size}")
    rows, cols = weight.shape
    pad = (-cols) % group_size
    w = torch.nn.functional.pad(weight.float(), (0, pad)).reshape(rows, -1, group_size)
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(-1, keepdim=True) / qmax
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / safe), -qmax, qmax)
    deq = (q * scale).reshape(rows, -1)[:, :cols]
    return deq.to(weight.dtype), scale[..., 0]


def _linear_modules(model) -> list[nn.Module]:
    return [m for layer in decoder_layers(model) for m in layer.modules()
            if isinstance(m, nn.Linear) or is_transposed(m)]


@torch.no_grad()
def _bnb_round_trip(weight: torch.Tensor, bits: int) -> torch.Tensor:
    import bitsandbytes.functional as bnbf

    w = weight.detach().to("cuda")
    if bits == 8:
        q, state = bnbf.quantize_blockwise(w)
        return bnbf.dequantize_blockwise(q, state).to(weight)
    q, state = bnbf.quantize_4bit(w, quant_type="nf4")
    return bnbf.dequantize_4bit(q, state).to(weight)


def check_backend(backend: str) -> None:
    """Refuse, before a model is loaded, a backend this machine cannot run."""
    if backend not in ("rtn", "bnb"):
        raise InputError(f"unknown quantisation backend '{backend}' (rtn, bnb)")
    if backend == "bnb" and not torch.cuda.is_available():
        raise InputError("--backend bnb needs a CUDA device (use rtn on CPU)")


@torch.no_grad()
def quantize_model(model, bits: int = 8, group_size: int = 128, backend: str = "rtn") -> dict:
    """Quantise the decoder layers' Linear weights in place; returns counts and the largest error."""
    check_backend(backend)
    count, max_error = 0, 0.0
    for module in _linear_modules(model):
        weight = module.weight.T if is_transposed(module) else module.weight  # (out, in) view
        new = _bnb_round_trip(weight, bits) if backend == "bnb" else quantize_tensor(weight, bits, group_size)[0]
        max_error = max(max_error, float((new - weight).abs().max()))
        weight.copy_(new)
        count += weight.numel()
    return {"bits": bits, "group_size": group_size, "backend": backend, "weights": count, "max_error": max_error}


def quantize(model, tokenizer, fact_sets, bits: int = 4, group_size: int = 128, backend: str = "rtn", *,
             fmt: str = "cloze", shots: int = 3, seed: int = 0) -> dict:
    """The quantisation attack: quantise `model` in place, and read each fact set's accuracy
    (probe format `fmt`) before and after. `fact_sets`: {name: questions}, or one list."""
    check_backend(backend)
    fact_sets = given.named(fact_sets, "fact_sets", given.questions)
    if not fact_sets:
        raise InputError("fact_sets: no questions")

    def accuracies() -> dict:
        return {name: probe_mcq(model, tokenizer, items, fmt, shots, seed) for name, items in fact_sets.items()}

    before = accuracies()
    stats = quantize_model(model, bits, group_size, backend)
    after = accuracies()
    return {"attack": "quantize", "format": fmt, "mcq": {name: r.to_json() for name, r in after.items()}, "text": {},
            "before": {name: r.accuracy for name, r in before.items()}, "quantization": stats}


@register_attack("quantize")
@dataclass(frozen=True)
class Quantization(Attack):
    """Round-to-nearest quantisation of the decoder layers' weights to `bits` (what a user who
    serves the model in 4 or 8 bits does to it)."""

    bits: int = 4

    def __post_init__(self):
        if self.bits not in (4, 8):
            raise OptionError(f"quantisation bits must be 4 or 8, got {self.bits}")

    @property
    def label(self) -> str:
        return f"{self.bits}-bit quantisation"

    @property
    def key(self) -> str:
        return f"quantize:{self.bits}bit"

    def apply(self, model, tokenizer, inputs: AttackInputs) -> AttackOutcome:
        quantize_model(model, bits=self.bits)
        return AttackOutcome()
