"""SHRED-style retain-set-free unlearning: self-distillation on the forget sentences themselves,
with the logit of each high-surprisal answer token demoted in the target.

    S        = per sentence, the ceil(fraction |A|) answer tokens with the highest surprisal
               -log p0(y_t | y_<t) under the original model p0 (chosen once, at setup)
    z~_t     = z0_t with the true token's logit lowered to min_v z0_{t,v} if t in S, else z0_t
    L_forget = mean_t KL(softmax(z~_t) || p_theta(. | y_<t))     over every real token t

so the one loss forgets at S and holds the original distribution on the other tokens; no retain
set and no retain step. z0 comes from a frozen copy of the original model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from cir.errors import OptionError
from cir.methods.losses import next_token_targets
from cir.methods import register
from cir.methods.base import Method, MethodConfig, frozen_copy


class SHREDLoss:
    last_layer = None  # needs the whole model
    count = staticmethod(next_token_targets)

    def __init__(self, frozen, fraction: float):
        self.frozen, self.fraction = frozen, fraction

    @torch.no_grad()
    def reference(self, model, batch) -> torch.Tensor:
        """(B, T-1) mask of the forget positions S."""
        logits = self.frozen(**batch.inputs(), use_cache=False).logits[:, :-1].float()
        surprisal = -logits.log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
        answer = batch.answer_mask[:, 1:]
        k = torch.ceil(self.fraction * answer.sum(1)).clamp_min(1)
        rank = surprisal.masked_fill(~answer, -math.inf).argsort(1, descending=True).argsort(1)
        return answer & (rank < k[:, None])

    def __call__(self, model, batch, selected) -> torch.Tensor:
        real, targets = batch.token_mask[:, 1:], batch.input_ids[:, 1:, None]
        with torch.no_grad():
            z0 = self.frozen(**batch.inputs(), use_cache=False).logits[:, :-1].float()
            demoted = z0.scatter(-1, targets, z0.min(-1, keepdim=True).values)
            target = torch.where(selected[..., None], demoted, z0)[real].log_softmax(-1)
        logp = model(**batch.inputs(), use_cache=False).logits[:, :-1][real].float().log_softmax(-1)
        return F.kl_div(logp, target, log_target=True, reduction="batchmean")


@dataclass
class SHREDConfig(MethodConfig):
    forget_loss: str = "shred"
    unlearning_rate: float = 0.1
    retain_every: int = 0  # retain-set-free
    fraction: float = 0.5  # share of each sentence's answer tokens demoted (at least one)

    own_losses: ClassVar[tuple[str, ...]] = ("shred",)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.fraction <= 1:
            raise OptionError("fraction must be in (0, 1]")


@register("shred")
class SHRED(Method):
    Config = SHREDConfig
    shardable = False  # its loss runs a frozen, unsharded copy of the model
    reference = "Hu, Godbole, Wei, Rostami, Thomason & Jia 2026, SHRED: Retain-Set-Free Unlearning via Self-Distillation with Logit Demotion (arXiv 2605.07482)"

    def build_forget_loss(self):
        return SHREDLoss(frozen_copy(self.model), self.config.fraction)
