"""Gradient difference: gradient ascent on the forget answers, descent on general text.

    L_forget = -CE(forget answer tokens)                      normalised step (Method.step)
    L_retain =  CE(next tokens of the retain text)            plain SGD, rate `retain_rate`
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cir.methods.losses import CrossEntropyRetain
from cir.methods import register
from cir.methods.base import Method, MethodConfig


@dataclass
class GradientDifferenceConfig(MethodConfig):
    forget_loss: str = "neg_cross_entropy"
    unlearning_rate: float = 0.1
    retain_rate: float = 1e-2  # on a cross-entropy, whose gradients are far larger than the hidden-state loss's

    own_losses: ClassVar[tuple[str, ...]] = ("neg_cross_entropy",)


@register("gradient_difference")
class GradientDifference(Method):
    Config = GradientDifferenceConfig
    reference = "Liu, Liu & Stone 2022, Continual Learning and Private Unlearning (CoLLAs 2022); as run in TOFU (Maini et al. 2024)"

    def build_retain_loss(self):
        return CrossEntropyRetain()
