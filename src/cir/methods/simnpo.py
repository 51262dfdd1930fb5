"""SimNPO: NPO without a reference model, on the length-normalised log-likelihood.

    L_forget = -(2/beta) mean_i log sigmoid(-(beta/|y_i|) log pi_theta(y_i|x_i) - gamma)

with y_i the answer tokens of forget sentence i (|y_i| of them) and gamma a reward margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from cir.errors import OptionError
from cir.methods.losses import npo_loss, sentences, sequence_logprob
from cir.methods import register
from cir.methods.base import Method, MethodConfig


class SimNPOLoss:
    last_layer = None  # needs the whole model
    count = staticmethod(sentences)  # a mean over sentences

    def __init__(self, beta: float, gamma: float):
        self.beta, self.gamma = beta, gamma

    def reference(self, model, batch):
        return None

    def __call__(self, model, batch, reference=None):
        logp, length = sequence_logprob(model, batch)
        # -(beta/|y|) log pi - gamma = -beta (log pi / |y| + gamma / beta)
        return npo_loss(logp / length.clamp_min(1) + self.gamma / self.beta, self.beta)


@dataclass
class SimNPOConfig(MethodConfig):
    forget_loss: str = "simnpo"
    unlearning_rate: float = 0.1
    beta: float = 2.5  # the paper's TOFU values
    gamma: float = 0.0

    own_losses: ClassVar[tuple[str, ...]] = ("simnpo",)

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise OptionError("beta must be > 0")
        if self.gamma < 0:
            raise OptionError("gamma must be >= 0")


@register("simnpo")
class SimNPO(Method):
    Config = SimNPOConfig
    reference = "Fan et al. 2024, Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning (arXiv 2410.07163)"

    def build_forget_loss(self):
        return SimNPOLoss(self.config.beta, self.config.gamma)
