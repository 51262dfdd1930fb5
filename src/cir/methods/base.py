"""What every unlearning method shares: layers defaulted by depth, the normalised forget
step, the retain step, references from the original model, and geometric disentanglement.

A method owns its loss and setup; the loop (cir.unlearning.loop) owns epochs, stopping, rollback,
outputs and seeds.

Geometric disentanglement (GU; Zhou et al. 2025, arXiv 2511.17100), for any method with
`gu=True`: with r_1..r_k the last `gu_history` flattened retain gradients and Q an orthonormal
basis of their span, every forget update g becomes g - Q Q^T g before the normalised step, so to
first order the step leaves the retain loss unchanged. The history fills from the retain steps;
until the first one, updates pass unprojected.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from cir.errors import OptionError
from cir import distributed
from cir.architecture import decoder_layers, mlp_projections
from cir.training.batches import Batch
from cir.fields import check_fields
from cir.methods.losses import FORGET_LOSSES, HiddenStateRetain, make_forget_loss, terms
from cir.models import master_copies


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
    gu: bool = False  # geometric disentanglement: forget updates orthogonal to recent retain gradients
    gu_history: int = 8  # retain gradients whose span GU projects out

    # a method with a loss of its own names it here (then `forget_loss` can only be that)
    own_losses: ClassVar[tuple[str, ...]] = ()
    # the range of `unlearning_rate` that `cir compare` searches (log scale), wide enough for its
    # budgets from 0.1% to 3% text loss: on the bundled model NPO at 0.01 already takes the text
    # loss up 1.6% in its first epoch
    rate_range: ClassVar[tuple[float, float]] = (1e-4, 0.1)
    # options the comparison's search chooses besides the step, each with its choices (none by
    # default: the method's defaults fix them)
    searched: ClassVar[dict[str, tuple]] = {}

    def __post_init__(self):
        check_fields(self)
        known = self.own_losses or tuple(FORGET_LOSSES)
        if self.forget_loss not in known:
            raise OptionError(f"forget_loss must be one of {', '.join(known)}, got '{self.forget_loss}'")
        if self.unlearning_rate <= 0:
            raise OptionError("unlearning_rate must be > 0")
        if self.retain_rate < 0:
            raise OptionError("retain_rate must be >= 0")
        if self.gu_history < 1:
            raise OptionError("gu_history must be >= 1")
        if self.retain_every < 0:
            raise OptionError(f"retain_every must be an integer >= 0, got {self.retain_every}")
        for name in ("train_layers", "loss_layers"):
            layers = getattr(self, name)
            if layers is not None and (not layers or min(layers) < 0):
                raise OptionError(f"{name} must be a non-empty list of layer numbers >= 0 (or null), got {layers}")

    def resolve(self, n_layers: int) -> "MethodConfig":
        """A copy with concrete layer lists for a model of `n_layers` layers."""
        train = self.train_layers if self.train_layers is not None else scaled_layers(n_layers, 0, 13)
        loss = self.loss_layers if self.loss_layers is not None else scaled_layers(n_layers, 6, 12)
        return dataclasses.replace(self, train_layers=list(train), loss_layers=list(loss))


@contextlib.contextmanager
def only_these_require_grad(model, params):
    """Within the block, gradients are computed for `params` only."""
    chosen = {id(p) for p in params}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in chosen)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def frozen_copy(model):
    """A frozen reference model: a deep copy in eval mode that takes no gradients."""
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


class RetainSubspace:
    """The span of the last `size` retain gradients, and the projection onto its complement."""

    def __init__(self, size: int, tol: float = 1e-6):
        self.vectors, self.tol = deque(maxlen=size), tol

    @staticmethod
    def flatten(grads: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([g.detach().float().flatten() for g in grads.values()])

    def remember(self, grads: dict[str, torch.Tensor]) -> None:
        flat = self.flatten(grads)
        if torch.isfinite(flat).all() and flat.norm() > 0:
            self.vectors.append(flat)

    def basis(self) -> torch.Tensor:
        """(P, k) orthonormal columns spanning the stored gradients (Gram-Schmidt, twice)."""
        columns = []
        for v in self.vectors:  # non-empty: `project` checks; every stored vector is non-zero
            scale = v.norm()
            for _ in range(2):
                for q in columns:
                    v = v - (q @ v) * q
            if v.norm() > self.tol * scale:  # skip vectors already (numerically) in the span
                columns.append(v / v.norm())
        return torch.stack(columns, 1)

    def project(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """g - Q Q^T g, reshaped back per parameter."""
        if not self.vectors:
            return grads
        q = self.basis()
        flat = self.flatten(grads)
        flat = flat - q @ (q.T @ flat)
        out, start = {}, 0
        for name, g in grads.items():
            out[name] = flat[start:start + g.numel()].view_as(g).to(g.dtype)
            start += g.numel()
        return out


class Method:
    """A gradient-based unlearning method: `forget_gradients` gives the direction, the base
    class rescales it to a fixed global norm, steps, and takes a retain step."""

    name = "base"
    Config = MethodConfig
    reference = ""
    shardable = True  # runs with FSDP-sharded weights (a method keeping an unsharded model copy: False)
    # what `prepare` does, in words, for the line that names it as it begins ("": nothing to name)
    preparing = ""
    progress = False  # progress bars over `prepare`'s passes (the loop sets it)

    def __init__(self, model, tokenizer, config: MethodConfig, forget: list[Batch], retain: list[Batch],
                 retain_facts: list[Batch] | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.config = config.resolve(len(decoder_layers(model)))
        self.forget, self.retain = forget, retain
        self.retain_facts = retain_facts or []  # sentences of facts to keep (a method may use them)
        # forget batch indices of each epoch (the loop sets it when every epoch draws its own
        # phrasings of the facts); None: every batch, every epoch
        self.schedule: list[list[int]] | None = None
        self.modules = mlp_projections(model, self.config.train_layers)
        self.forget_loss = self.build_forget_loss()
        self.retain_loss = self.build_retain_loss()
        self.forget_refs = [self.forget_loss.reference(model, b) for b in forget]
        self.retain_refs = [self.retain_loss.reference(model, b) for b in retain]
        self._retain_cursor = 0
        self.retain_subspace = RetainSubspace(self.config.gu_history)
        self.masters = master_copies(self.trained_parameters())

    def build_forget_loss(self):
        """The forget loss: an object with `reference(model, batch)` (taken once, from the
        original model) and `__call__(model, batch, reference) -> scalar`. Lower = more forgotten."""
        return make_forget_loss(self.config.forget_loss, self.model, self.config.loss_layers)

    def build_retain_loss(self):
        """The retain loss, same interface; by default the hidden state after the last trained layer."""
        return HiddenStateRetain(self.model, max(self.config.train_layers))

    def trained_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {name: module.weight for name, module in self.modules.items()}

    def _gradients(self, loss_fn, n_terms: int) -> tuple[float, dict[str, torch.Tensor]]:
        """(loss value, {name: d loss / d trained weight}, zeros where unused). With several
        processes, the loss and gradients of the whole batch, from this process's shard of
        `n_terms` terms and the others'."""
        params = self.trained_parameters()
        if distributed.is_sharded(self.model):
            return self._sharded_gradients(loss_fn, n_terms, params)
        with torch.enable_grad():
            loss = loss_fn()
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        value, weight = self._whole_batch(loss, n_terms)
        grads = {n: (g if g is not None and n_terms else torch.zeros_like(p)) for (n, p), g in zip(params.items(), grads)}
        return value, distributed.weighted_sum(grads, weight)

    def _sharded_gradients(self, loss_fn, n_terms: int, params: dict) -> tuple[float, dict[str, torch.Tensor]]:
        """Under FSDP: backward on the loss scaled by this process's share; FSDP sums the
        processes' gradients into each one's slice of every weight (every process takes part,
        also one whose shard has no terms)."""
        with only_these_require_grad(self.model, params.values()), torch.enable_grad():
            loss = loss_fn()
            value, weight = self._whole_batch(loss, n_terms)
            (loss * weight if n_terms else loss.nan_to_num() * 0.0).backward()
        grads = {}
        for name, p in params.items():
            grads[name] = p.grad if p.grad is not None else torch.zeros_like(p)
            p.grad = None
        return value, grads

    def _whole_batch(self, loss: torch.Tensor, n_terms: int) -> tuple[float, float]:
        """(the whole batch's loss, this process's weight: its share of the batch's `n_terms`
        terms). A shard with no terms (e.g. no answer token) adds nothing. A non-finite loss
        raises NonFiniteLoss on every process together."""
        weight = distributed.share(n_terms)
        value = distributed.sum_scalar(weight * float(loss.detach()) if n_terms else 0.0)
        self._check(torch.tensor(value))
        return value, weight

    @torch.no_grad()
    def forget_loss_value(self) -> float:
        """The method's forget loss, averaged over the forget batches, at the current weights."""
        values = [float(self.forget_loss(self.model, b, r)) for b, r in zip(self.forget, self.forget_refs)]
        return sum(values) / len(values)

    def prepare(self) -> None:
        """Work before the first update (CIR collects its statistics here). It changes no weight:
        the loop takes epoch 0's row from its measurements of the original model."""

    def bar(self, items, what: str):
        """`items`, with a progress bar naming `what` where the loop asked for one (`progress`)."""
        return tqdm(items, desc=what, disable=not self.progress, leave=False)

    def forget_gradients(self, index: int) -> tuple[float, dict[str, torch.Tensor]]:
        """(loss value, {module name: gradient of the forget loss w.r.t. its weight})."""
        batch = self.forget[index]
        return self._gradients(lambda: self.forget_loss(self.model, batch, self.forget_refs[index]),
                               terms(self.forget_loss, batch))

    def retain_gradients(self, index: int) -> tuple[float, dict[str, torch.Tensor]]:
        batch = self.retain[index]
        return self._gradients(lambda: self.retain_loss(self.model, batch, self.retain_refs[index]),
                               terms(self.retain_loss, batch))

    def epoch_batches(self, epoch: int) -> list[int]:
        """The forget batches of `epoch` (1-based; epoch 0, the preparing pass, reads epoch 1's)."""
        if self.schedule is None:
            return list(range(len(self.forget)))
        return self.schedule[max(epoch, 1) - 1]

    def run_epoch(self, epoch: int) -> dict:
        """One pass over the epoch's forget batches; returns {"forget_loss": mean loss before each step}."""
        losses = []
        for index in self.epoch_batches(epoch):
            loss, grads = self.forget_gradients(index)
            self.step(grads)
            losses.append(loss)
            if self.retain and self.config.retain_every and (index + 1) % self.config.retain_every == 0:
                self.retain_step()
        return {"forget_loss": sum(losses) / len(losses)}

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """Rescale all gradients together to a global L2 norm of `unlearning_rate`; SGD with lr 1.
        With `gu`, the update is first projected off the recent retain gradients."""
        if self.config.gu:
            grads = self.retain_subspace.project(grads)
        norm = distributed.global_norm(list(grads.values()))
        if not torch.isfinite(norm):
            raise NonFiniteLoss("the forget gradient is not finite")
        if norm == 0:
            return
        params = self.trained_parameters()
        for name, grad in grads.items():
            self.apply(name, distributed.local_part(params[name], grad) * (self.config.unlearning_rate / norm))

    def retain_step(self) -> float:
        """Plain SGD on the retain loss, rate `retain_rate`; with `gu` its gradient is remembered."""
        if self.config.retain_rate == 0 and not self.config.gu:
            return 0.0
        index = self._retain_cursor % len(self.retain)
        self._retain_cursor += 1
        loss, grads = self.retain_gradients(index)
        if self.config.gu:
            self.retain_subspace.remember(grads)
        with torch.no_grad():
            for name, g in grads.items():
                self.apply(name, self.config.retain_rate * g)
        return loss

    @torch.no_grad()
    def apply(self, name: str, delta: torch.Tensor) -> None:
        """weight -= delta. A weight held in bfloat16 or float16 is updated through its float32
        master copy and cast: steps below the weight's resolution accumulate instead of being
        rounded away (or up to a whole unit of the last place)."""
        param = self.trained_parameters()[name]
        if name not in self.masters:
            param.sub_(delta.to(param.dtype))
            return
        self.masters[name].sub_(delta.float())
        param.copy_(self.masters[name])

    @staticmethod
    def _check(loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {float(loss.detach())}")
