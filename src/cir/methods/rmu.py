"""Representation Misdirection for Unlearning (RMU): at one layer l, push the residual stream of
forget tokens towards a fixed random direction of large norm, and hold it on retain text.

    L_forget = mean_t ||h_l(x_t) - c u||^2 / d       u = r / ||r||,  r ~ U[0, 1)^d drawn once
    L_retain = ||h_l - h0_l|| / mean ||h0_l||        on general text (the shared retain step)

Only the MLPs of layers l-2..l are trained. Defaults: l at depth 7/32 (the paper's layer 7 of
Zephyr-7B); c = `steering_scale` x the mean norm of the original h_l on the forget tokens (the
paper's fixed c, 6.5 to 300, depends on the model's activation scale; this rule follows the
adaptive-coefficient variant of Dang et al. 2024).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from cir.errors import OptionError
from cir.distributed import global_mean
from cir.methods.losses import ResidualStreamLoss
from cir.methods import register
from cir.methods.base import Method, MethodConfig, scaled_layers


class RMULoss(ResidualStreamLoss):
    def __init__(self, model, layer: int):
        super().__init__(model, [layer])
        self.target = None  # c u, set by the method

    def reference(self, model, batch):
        return None

    def __call__(self, model, batch, reference=None):
        (h,) = self.outputs(model, batch).values()
        return F.mse_loss(h.float(), self.target.expand_as(h))


@dataclass
class RMUConfig(MethodConfig):
    forget_loss: str = "rmu"
    unlearning_rate: float = 0.1
    layer: int | None = None  # None: depth 7/32; loss_layers = [layer], train_layers = layer-2..layer
    steering_coef: float | None = None  # c; None: steering_scale x mean original ||h_l|| on the forget tokens
    steering_scale: float = 5.0

    own_losses: ClassVar[tuple[str, ...]] = ("rmu",)

    def __post_init__(self):
        super().__post_init__()
        if self.steering_coef is not None and self.steering_coef <= 0:
            raise OptionError("steering_coef must be > 0")
        if self.steering_scale <= 0:
            raise OptionError("steering_scale must be > 0")
        if self.layer is not None and self.layer < 0:
            raise OptionError("layer must be >= 0")

    def resolve(self, n_layers: int) -> "RMUConfig":
        layer = self.layer if self.layer is not None else scaled_layers(n_layers, 7, 8)[0]
        train = self.train_layers if self.train_layers is not None else list(range(max(0, layer - 2), layer + 1))
        return dataclasses.replace(self, layer=layer, train_layers=list(train), loss_layers=[layer])


@register("rmu")
class RMU(Method):
    Config = RMUConfig
    reference = "Li et al. 2024, The WMDP Benchmark: Measuring and Reducing Malicious Use with Unlearning (arXiv 2403.03218)"

    def build_forget_loss(self):
        loss = RMULoss(self.model, self.config.layer)
        coef = self.config.steering_coef
        if coef is None:
            with torch.no_grad():
                norms = torch.cat([h.norm(dim=-1) for b in self.forget for h in loss.outputs(self.model, b).values()])
            coef = self.config.steering_scale * float(global_mean(norms.float()))
        weight = self.model.get_input_embeddings().weight
        direction = torch.rand(weight.shape[1], device=weight.device)
        self.steering_coef, self.direction = coef, direction / direction.norm()
        loss.target = coef * self.direction
        return loss
