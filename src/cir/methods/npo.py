"""Negative Preference Optimization: the forget answers as dispreferred responses, against the
frozen original model pi_ref.

    L_forget = -(2/beta) mean_i log sigmoid(-beta [log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i)])

with y_i the answer tokens of forget sentence i and x_i its prefix. The forget sentences are
fixed, so pi_ref's log-likelihoods are taken once, at setup, from the model before any update:
the same values a frozen copy would give, without holding a second model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cir.errors import OptionError
from cir.methods import register
from cir.methods.base import Method, MethodConfig
from cir.methods.losses import SaturatingSequence


@dataclass
class NPOConfig(MethodConfig):
    forget_loss: str = "npo"
    unlearning_rate: float = 0.1
    beta: float = 0.1  # the paper's value

    own_losses: ClassVar[tuple[str, ...]] = ("npo",)

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise OptionError("beta must be > 0")


@register("npo")
class NPO(Method):
    Config = NPOConfig
    reference = "Zhang, Lin, Bai & Mei 2024, Negative Preference Optimization (arXiv 2404.05868)"

    def build_forget_loss(self):
        return SaturatingSequence(self.model, beta=self.config.beta)
