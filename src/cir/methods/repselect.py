"""RepSelect (after Sondej & Yang's successor to CIR, filyp/open-unlearning): one forget
direction for the whole forget set, whitened per MLP projection, and a line search on its size.

Per MLP projection of every layer, with a_t its input and g_t the forget loss's gradient at its
output, over every answer-predicting position t of the whole forget set:

    1. G = sum_t g_t a_t^T, the forget gradient of the weight, accumulated once;
    2. soft collapse on both sides: each top principal direction u_i of the a_t (and of the
       g_t) is shrunk by lambda_min / lambda_i over the `components` largest, a whitening that
       leaves what the forget tokens share weak and what is specific to them whole:
       D = S_g G S_a, S = I - sum_i (1 - lambda_min / lambda_i) u_i u_i^T;
    3. the line search: epoch k sets W = W0 - k * unlearning_rate * D / ||D|| (global norm over
       the projections); the loop stops at the first epoch past a budget (text loss or
       collateral) and keeps the one before, so the step size is the largest in budget.

With `adversarial_epochs`, a low-rank adapter on every trained projection (a rank-r delta
B A on its output, B starting at zero, as LoRA) is first fitted to the forget sentences (Adam,
cross-entropy): the model an attacker would relearn. The gradient of step 1 is taken through the
adapted model, so the update also covers what relearning recovers; the adapter is then dropped,
and the update is applied to the original weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch

from cir.errors import OptionError
from cir import distributed
from cir.architecture import is_transposed, weight_grad_from
from cir.training.finetune import finetune
from cir.methods.collapse import StreamingMoments, soft_basis, soft_collapse
from cir.training.hooks import activations_require_grad, capture_acts_and_grads
from cir.methods.losses import predicting, terms
from cir.methods import register
from cir.methods.base import Method, MethodConfig


@dataclass
class RepSelectConfig(MethodConfig):
    forget_loss: str = "true_logit"
    unlearning_rate: float = 0.5  # line-search increment: global L2 norm added per epoch
    components: int = 64  # top principal directions shrunk by the whitening, per side (<= width / 4)
    retain_every: int = 0  # no retain steps: the budgets bound the step instead
    all_layers: bool = True  # MLPs of every layer (train_layers unset); False: depth-scaled default
    adversarial_epochs: int = 0  # epochs of an adversarial low-rank adapter fitted first (0 = none)
    adversarial_rank: int = 8
    adversarial_lr: float = 1e-3

    rate_range: ClassVar[tuple[float, float]] = (0.1, 20.0)

    def __post_init__(self):
        super().__post_init__()
        if self.components < 1:
            raise OptionError(f"components must be an integer >= 1, got {self.components}")
        if self.adversarial_epochs < 0 or self.adversarial_rank < 1 or self.adversarial_lr <= 0:
            raise OptionError("adversarial_epochs must be >= 0, adversarial_rank >= 1 and adversarial_lr > 0")

    def resolve(self, n_layers: int) -> "RepSelectConfig":
        if self.all_layers and self.train_layers is None:
            import dataclasses

            every = list(range(n_layers))
            return dataclasses.replace(self, train_layers=every,
                                       loss_layers=self.loss_layers if self.loss_layers is not None else every)
        return super().resolve(n_layers)


class LowRankAdapters:
    """A trainable rank-r delta B A on the output of each module, added by forward hooks while
    `active`; the modules' weights are not touched. B starts at zero (the adapted model starts
    as the model itself), A at random with the scale of the input width."""

    def __init__(self, modules: dict[str, torch.nn.Module], rank: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.modules, self.pairs = modules, {}
        for name, module in modules.items():
            d_out, d_in = module.weight.shape[::-1] if is_transposed(module) else module.weight.shape
            device, dtype = module.weight.device, module.weight.dtype
            a = torch.randn(rank, d_in, generator=generator).to(device, dtype) / d_in**0.5
            self.pairs[name] = (torch.nn.Parameter(a), torch.nn.Parameter(torch.zeros(d_out, rank, device=device, dtype=dtype)))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for pair in self.pairs.values() for p in pair]

    @contextlib.contextmanager
    def active(self):
        def make(a, b):
            return lambda module, args, output: output + (args[0] @ a.T) @ b.T

        handles = [self.modules[name].register_forward_hook(make(a, b)) for name, (a, b) in self.pairs.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


@register("repselect")
class RepSelect(Method):
    Config = RepSelectConfig
    shardable = False  # not yet run with FSDP-sharded weights
    reference = "Sondej & Yang, RepSelect: CIR's successor with whitened collapse and a line search (open-unlearning)"
    preparing = "epoch 0: the whitened forget direction of every projection, no update yet"

    def fit_adversary(self) -> LowRankAdapters:
        """The low-rank adapter fitted to the forget sentences (`adversarial_epochs` of Adam on
        their cross-entropy, the model's own weights frozen); its per-epoch losses are kept in
        `adversarial_losses`."""
        adapters = LowRankAdapters(self.modules, self.config.adversarial_rank)
        sentences = [self.tokenizer.decode(batch.input_ids[row][batch.token_mask[row]])
                     for batch in (self.forget[i] for i in self.epoch_batches(0)) for row in range(len(batch))]
        if distributed.launched():  # each process holds a shard of every batch: all of them, in one order
            from accelerate.utils import gather_object

            sentences = gather_object(sentences)
        with adapters.active():
            self.adversarial_losses = finetune(self.model, self.tokenizer, sentences, epochs=self.config.adversarial_epochs,
                                               lr=self.config.adversarial_lr, optimizer="adam",
                                               params=adapters.parameters(), progress=False)
        return adapters

    def prepare(self) -> None:
        """The whitened forget direction D per projection, from one pass over the forget set
        (through the adversarially adapted model when `adversarial_epochs` is set)."""
        adapters = self.fit_adversary() if self.config.adversarial_epochs else None
        with adapters.active() if adapters is not None else contextlib.nullcontext():
            self._accumulate()

    def _accumulate(self) -> None:
        acts_moments, grads_moments, weight_grads = {}, {}, {}
        for index in self.bar(self.epoch_batches(0), "statistics (epoch 0)"):
            batch = self.forget[index]
            acts, grads = {}, {}
            with activations_require_grad(self.model), capture_acts_and_grads(self.modules, acts, grads), \
                    torch.enable_grad():
                loss = self.forget_loss(self.model, batch, self.forget_refs[index])
                loss.backward()
            n_terms = terms(self.forget_loss, batch)
            _, weight = self._whole_batch(loss, n_terms)
            rows = predicting(batch) & batch.token_mask  # positions that predict an answer token
            for name in grads:
                a, g = acts[name][rows], grads[name][rows] * weight
                if name not in acts_moments:
                    acts_moments[name] = StreamingMoments(a.shape[-1], a.device)
                    grads_moments[name] = StreamingMoments(g.shape[-1], g.device)
                    weight_grads[name] = torch.zeros_like(self.modules[name].weight, dtype=torch.float32)
                acts_moments[name].update(a)
                grads_moments[name].update(g)
                weight_grads[name] += weight_grad_from(self.modules[name], g, a).float()
        self.direction = {}
        for name, module in self.modules.items():
            if name not in weight_grads:
                self.direction[name] = torch.zeros_like(module.weight)
                continue
            if distributed.launched():
                distributed.sum_(acts_moments[name].tensors() + grads_moments[name].tensors() + [weight_grads[name]])
            a_vectors, a_keep = soft_basis(acts_moments[name], self._components(acts_moments[name]))
            g_vectors, g_keep = soft_basis(grads_moments[name], self._components(grads_moments[name]))
            whitened = soft_collapse(weight_grads[name], a_vectors, a_keep)  # rows of G: a-side
            whitened = soft_collapse(whitened.T, g_vectors, g_keep).T  # columns: g-side
            self.direction[name] = distributed.local_part(module.weight, whitened.to(module.weight.dtype))

    def _components(self, moments: StreamingMoments) -> int:
        """`components`, at most a quarter of the width: whitening every direction of a narrow
        module would leave the direction nothing of the forget gradient's shape."""
        return max(1, min(self.config.components, moments.sum.shape[0] // 4))

    def run_epoch(self, epoch: int) -> dict:
        """One more increment of the line search along D."""
        self.step(self.direction)
        return {"forget_loss": self.forget_loss_value()}
