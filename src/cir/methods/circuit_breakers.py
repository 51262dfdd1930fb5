"""Circuit breakers as adapted in the CIR paper: reroute the forget representations by driving
their residual streams orthogonal to the original ones, while holding a later hidden state.

    L_forget = mean_{l in loss layers} mean_t max(0, cos(h_l(x_t), h0_l(x_t)))     (forget tokens)
    L_retain = ||h_r - h0_r|| / mean ||h0_r||      at `retain_layer` r, after the trained layers
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from cir.errors import OptionError
from cir.methods.losses import HiddenStateRetain
from cir.methods import register
from cir.methods.base import Method, MethodConfig


@dataclass
class CircuitBreakersConfig(MethodConfig):
    forget_loss: str = "circuit_breaker"
    unlearning_rate: float = 0.2
    retain_layer: int | None = None  # None: depth 24/32, and after the last trained layer

    own_losses: ClassVar[tuple[str, ...]] = ("circuit_breaker",)

    def __post_init__(self):
        super().__post_init__()
        if self.retain_layer is not None and self.retain_layer < 0:
            raise OptionError("retain_layer must be >= 0")

    def resolve(self, n_layers: int) -> "CircuitBreakersConfig":
        resolved = super().resolve(n_layers)
        layer = self.retain_layer
        if layer is None:
            layer = min(n_layers - 1, max(round(24 * n_layers / 32), max(resolved.train_layers) + 1))
        return dataclasses.replace(resolved, retain_layer=layer)


@register("circuit_breakers")
class CircuitBreakers(Method):
    Config = CircuitBreakersConfig
    reference = "Zou et al. 2024, Improving Alignment and Robustness with Circuit Breakers (arXiv 2406.04313), as adapted by Sondej & Yang 2025"

    def build_retain_loss(self):
        return HiddenStateRetain(self.model, self.config.retain_layer)
