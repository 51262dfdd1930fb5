"""Gradient ascent: raise the cross-entropy of the forget answers, nothing else.

    L_forget = -(1/|A|) sum_{t in A} -log p_theta(y_t | y_<t)     (A: answer tokens of the batch)

Each step is the normalised step of Method.step (global L2 norm `unlearning_rate`); no retain step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cir.methods import register
from cir.methods.base import Method, MethodConfig


@dataclass
class GradientAscentConfig(MethodConfig):
    forget_loss: str = "neg_cross_entropy"
    unlearning_rate: float = 0.1
    retain_every: int = 0  # plain gradient ascent has no retain term

    own_losses: ClassVar[tuple[str, ...]] = ("neg_cross_entropy",)


@register("gradient_ascent")
class GradientAscent(Method):
    Config = GradientAscentConfig
    reference = "Jang et al. 2023, Knowledge Unlearning for Mitigating Privacy Risks in Language Models (ACL 2023)"
