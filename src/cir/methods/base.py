"""What every unlearning method shares: layers defaulted by depth, the normalised forget
step, the retain step, and references from the original model.

A method owns its loss and setup; the loop (cir.unlearn) owns epochs, stopping, rollback,
outputs and seeds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from cir.architecture import decoder_layers, mlp_projections
from cir.batches import Batch
from cir.losses import FORGET_LOSSES, HiddenStateRetain, make_forget_loss


class NonFiniteLoss(RuntimeError):
    pass


def scaled_layers(n_layers: int, start: int, stop: int, reference_depth: int = 32) -> list[int]:
    """range(start, stop) of a `reference_depth`-layer model, scaled to `n_layers` layers."""
    lo = round(start * n_layers / reference_depth)
    hi = max(lo + 1, round(stop * n_layers / reference_depth))
    return list(range(lo, min(hi, n_layers)))


@dataclass
class MethodConfig:
    """Options shared by the gradient-based methods. `None` layers are defaulted by depth."""

    forget_loss: str = "neg_cross_entropy"
    train_layers: list[int] | None = None  # paper (32 layers): 0-12
    loss_layers: list[int] | None = None  # paper (32 layers): 6-11
    unlearning_rate: float = 0.2  # L2 norm of every forget step (paper: 0.2)
    retain_rate: float = 3e-4  # plain SGD rate of the retain step (paper: 3e-4)
    retain_every: int = 1  # one retain step after every this many forget steps; 0 = none

    def __post_init__(self):
        if self.forget_loss not in FORGET_LOSSES:
            raise ValueError(f"forget_loss must be one of {', '.join(FORGET_LOSSES)}, got '{self.forget_loss}'")
        if self.unlearning_rate <= 0:
            raise ValueError("unlearning_rate must be > 0")
        if self.retain_rate < 0:
            raise ValueError("retain_rate must be >= 0")

    def resolve(self, n_layers: int) -> "MethodConfig":
        """A copy with concrete layer lists for a model of `n_layers` layers."""
        train = self.train_layers if self.train_layers is not None else scaled_layers(n_layers, 0, 13)
        loss = self.loss_layers if self.loss_layers is not None else scaled_layers(n_layers, 6, 12)
        return dataclasses.replace(self, train_layers=list(train), loss_layers=list(loss))


class Method:
    """A gradient-based unlearning method: `forget_gradients` gives the direction, the base
    class rescales it to a fixed global norm, steps, and takes a retain step."""

    name = "base"
    Config = MethodConfig
    reference = ""

    def __init__(self, model, tokenizer, config: MethodConfig, forget: list[Batch], retain: list[Batch]):
        self.model, self.tokenizer = model, tokenizer
        self.config = config.resolve(len(decoder_layers(model)))
        self.forget, self.retain = forget, retain
        self.modules = mlp_projections(model, self.config.train_layers)
        self.forget_loss = make_forget_loss(self.config.forget_loss, model, self.config.loss_layers)
        self.retain_loss = HiddenStateRetain(model, max(self.config.train_layers))
        self.forget_refs = [self.forget_loss.reference(model, b) for b in forget]
        self.retain_refs = [self.retain_loss.reference(model, b) for b in retain]
        self._retain_cursor = 0

    def trained_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {name: module.weight for name, module in self.modules.items()}

    def prepare(self) -> None:
        """Work before the first update (CIR collects its statistics here)."""

    def forget_gradients(self, index: int) -> tuple[float, dict[str, torch.Tensor]]:
        """(loss value, {module name: gradient of the forget loss w.r.t. its weight})."""
        params = self.trained_parameters()
        with torch.enable_grad():
            loss = self.forget_loss(self.model, self.forget[index], self.forget_refs[index])
            self._check(loss)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return float(loss), {n: (g if g is not None else torch.zeros_like(p))
                             for (n, p), g in zip(params.items(), grads)}

    def run_epoch(self, epoch: int) -> dict:
        """One pass over the forget batches; returns {"forget_loss": mean loss before each step}."""
        losses = []
        for index in range(len(self.forget)):
            loss, grads = self.forget_gradients(index)
            self.step(grads)
            losses.append(loss)
            if self.retain and self.config.retain_every and (index + 1) % self.config.retain_every == 0:
                self.retain_step()
        return {"forget_loss": sum(losses) / len(losses)}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """Rescale all gradients together to a global L2 norm of `unlearning_rate`; SGD with lr 1."""
        norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads.values()))
        if not torch.isfinite(norm):
            raise NonFiniteLoss("the forget gradient is not finite")
        if norm == 0:
            return
        params = self.trained_parameters()
        for name, grad in grads.items():
            params[name].sub_(grad * (self.config.unlearning_rate / norm))

    def retain_step(self) -> float:
        if self.config.retain_rate == 0:
            return 0.0
        index = self._retain_cursor % len(self.retain)
        self._retain_cursor += 1
        params = self.trained_parameters()
        with torch.enable_grad():
            loss = self.retain_loss(self.model, self.retain[index], self.retain_refs[index])
            self._check(loss)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                if g is not None:
                    p.sub_(self.config.retain_rate * g)
        return float(loss.detach())

    @staticmethod
    def _check(loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {float(loss)}")
