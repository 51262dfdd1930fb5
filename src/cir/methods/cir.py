"""Collapse of Irrelevant Representations (Sondej & Yang, 2025, arXiv 2509.11816).

Per trained MLP projection, with a_t its input and g_t the gradient at its output for forget
token t:

    1. statistics: mean and covariance of {a_t} and of {g_t} over all forget tokens of the
       previous pass (the first pass, `prepare`, only collects them); with several processes,
       the counts, sums and sums of outer products are summed across them first, so every
       process finds the subspaces one process would find on all the tokens;
    2. basis:      orthonormal span of the mean direction and the top principal components;
    3. collapse:   a_t, g_t  ->  their components outside that span;
    4. update:     grad W = sum_t collapse(g_t) collapse(a_t)^T, then one step of global
                   L2 norm `unlearning_rate` across all modules (see Method.step);
    5. retain:     a small plain gradient step keeping the residual stream on general text.

Two options go beyond the paper. `stats_tokens=answer` takes the statistics of step 1 from the
positions that predict an answer token only (the positions the update is formed from when
`update_tokens=answer`). `retain_components=k` (retain-aware collapse) also removes, per module,
the mean and top k principal components of the activations and output gradients at the
answer-predicting positions of facts to keep (the retain facts, taken once from the original
model): the directions that answering *other* questions uses, so that the update keeps only
what is specific to the facts being forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from cir.errors import OptionError
from cir import distributed
from cir.architecture import weight_grad_from
from cir.methods.collapse import RowMoments, StreamingMoments, collapse, common_basis, orthonormal_rows, soft_basis, soft_collapse
from cir.training.hooks import activations_require_grad, capture_acts_and_grads
from cir.methods import register
from cir.methods.losses import predicting, terms
from cir.methods.base import Method, MethodConfig


UPDATE_TOKENS = ("all", "answer", "subject")
STATISTICS = ("auto", "covariance", "rows")
# statistics=auto holds a side this wide or wider as rows: there a d x d float32 sum takes 64 MiB
# or more (0.8 GB at 14,336), and the rows' randomized SVD was 3.8-7.7x faster than the covariance
# path on the CPU at 8,192-18,944 (docs/benchmarks.md); the bundled model's sides (576, 1,536) stay
# covariance
ROWS_FROM_WIDTH = 4096


def held_as_rows(statistics: str, dim: int) -> bool:
    """Whether a side `dim` wide keeps its statistics as rows (RowMoments) under `statistics`."""
    return statistics == "rows" or (statistics == "auto" and dim >= ROWS_FROM_WIDTH)


def update_rows(batch, update_tokens: str) -> torch.Tensor | slice:
    """Which of the batch's real tokens (rows of `x[batch.token_mask]`) the update is formed from."""
    mask = batch.token_mask
    if update_tokens == "answer":
        return predicting(batch)[mask]  # real tokens that predict an answer token
    if update_tokens == "subject":
        if batch.subject_mask is None:
            return torch.zeros(int(mask.sum()), dtype=torch.bool, device=mask.device)
        return batch.subject_mask[mask]
    return slice(None)


@dataclass
class CIRConfig(MethodConfig):
    """CIR's options. The paper's values (Llama-3.1-8B): forget_loss=mlp_breaking, layers 0-12
    trained and 6-11 in the loss, unlearning_rate=0.2, act_components=23, grad_components=35,
    retain_rate=3e-4, the update summed over every token (configs/paper-llama-3.1-8b.yaml).
    The defaults below were chosen by the sweeps on the bundled SmolLM2-135M (docs/sweep.md):
    the true-token logit on the answer tokens, a 2.5x larger step, the update taken from the
    positions that predict the answer only, and the retain-aware collapse (16 components of the
    facts to keep removed too); layers are scaled by depth."""

    forget_loss: str = "true_logit"
    unlearning_rate: float = 0.5
    act_components: int = 23  # principal components removed from activations, besides the mean
    grad_components: int = 35  # and from output gradients
    collapse: str = "paper"  # paper: remove mean + top PCs; soft: Mahalanobis shrink; none: ablation
    soft_components: int = 256  # directions shrunk by the soft collapse
    # tokens whose (collapsed) a_t, g_t enter the update: all (paper), answer: only the
    # positions that predict an answer token (statistics still come from every token), or
    # subject: only the tokens of the fact's subject (facts without one: none), for forgetting
    # everything about an entity; on the bundled model, answer keeps the forgetting and spares
    # other facts about the same subjects, which updates at the subject's tokens damage
    # (docs/sweep.md)
    update_tokens: str = "answer"
    stats_tokens: str = "all"  # tokens the statistics come from: all (paper) or answer (as above)
    # retain-aware collapse: PCs of the retain facts also removed (0 = off; collapse=paper only)
    retain_components: int = 16
    # the retain facts' tokens those PCs come from: answer (the positions that predict an answer
    # token: what answering uses) or all (the subjects' tokens too: what an update formed from
    # every token, update_tokens=all, would reach of other facts about the same subjects)
    retain_tokens: str = "answer"
    # how the statistics are held: covariance: sums of outer products, d x d per projection (0.8 GB
    # in float32 at Llama-3.1-8B's 14,336-wide MLP side; exact); rows: the rows themselves while
    # there are fewer than d (a randomized SVD finds the components), then as covariance; auto:
    # rows on a side at least ROWS_FROM_WIDTH wide, covariance on a narrower one
    statistics: str = "auto"

    searched: ClassVar[dict[str, tuple]] = {"forget_loss": ("true_logit", "saturating_logit", "neg_cross_entropy",
                                                            "mlp_breaking")}
    rate_range: ClassVar[tuple[float, float]] = (0.3, 30.0)  # 1.0 moves the text loss < 0.05% in 2 epochs

    def __post_init__(self):
        super().__post_init__()
        if self.collapse not in ("paper", "soft", "none"):
            raise OptionError(f"collapse must be paper, soft or none, got '{self.collapse}'")
        if self.statistics not in STATISTICS:
            raise OptionError(f"statistics must be one of {', '.join(STATISTICS)}, got '{self.statistics}'")
        for name in ("stats_tokens", "retain_tokens"):
            if getattr(self, name) not in ("all", "answer"):
                raise OptionError(f"{name} must be all or answer, got '{getattr(self, name)}'")
        if self.update_tokens not in UPDATE_TOKENS:
            raise OptionError(f"update_tokens must be {', '.join(UPDATE_TOKENS[:-1])} or {UPDATE_TOKENS[-1]}, "
                             f"got '{self.update_tokens}'")
        if self.retain_components < 0:
            raise OptionError("retain_components must be >= 0")

        if self.act_components < 0 or self.grad_components < 0:
            raise OptionError("act_components and grad_components must be >= 0")
        if self.soft_components < 1:
            raise OptionError(f"soft_components must be an integer >= 1, got {self.soft_components}")


class _ModuleStats:
    """Streaming moments of one module's inputs and output gradients. Modules that read the
    same input (Llama's gate_proj and up_proj) share one `acts` object."""

    def __init__(self, acts: StreamingMoments, grads: StreamingMoments):
        self.acts, self.grads = acts, grads


@register("cir")
class CIR(Method):
    Config = CIRConfig
    reference = "Sondej & Yang 2025, Collapse of Irrelevant Representations (arXiv 2509.11816)"
    preparing = "epoch 0: the statistics of the forget facts' activations and gradients, no update yet"

    def __init__(self, model, tokenizer, config: CIRConfig, forget, retain, retain_facts=None):
        super().__init__(model, tokenizer, config, forget, retain, retain_facts)
        self.collapsers = {}  # module name -> (acts collapse fn, grads collapse fn), from the last pass
        self.stats = {}  # module name -> _ModuleStats of the current pass
        self.retain_bases = {}  # id(forget-pass moments) -> retain facts' basis, for the retain-aware collapse

    # -- statistics ------------------------------------------------------------------
    def _new_stats(self):
        self.stats = {}

    def _stats_for(self, raw_acts: dict, grads: dict) -> None:
        """Create this pass's statistics, sharing `acts` between modules fed the same tensor."""
        device = next(self.model.parameters()).device

        def moments(dim: int) -> StreamingMoments:
            return (RowMoments if held_as_rows(self.config.statistics, dim) else StreamingMoments)(dim, device)

        shared = {}
        for name in grads:  # modules the loss reaches (not those past a truncated forward)
            key = (raw_acts[name].data_ptr(), tuple(raw_acts[name].shape))
            if key not in shared:
                shared[key] = moments(raw_acts[name].shape[-1])
            self.stats[name] = _ModuleStats(shared[key], moments(grads[name].shape[-1]))

    def _reduce_stats(self) -> None:
        """Sum every process's moments (each distinct object once)."""
        if not distributed.launched():
            return
        unique = {id(m): m for stats in self.stats.values() for m in (stats.acts, stats.grads)}
        for moments in unique.values():
            count = torch.tensor([float(moments.count)], dtype=torch.float64, device=moments.sum.device)
            distributed.sum_(moments.tensors() + [count])
            moments.count = int(round(float(count)))

    def _finish_stats(self):
        """Turn this pass's statistics into the collapse used by the next pass."""
        self._reduce_stats()
        if self.config.collapse == "none":
            self.collapsers = {n: (None, None) for n in self.stats}
            return
        made = {}  # id(moments) -> collapse fn, so a shared `acts` object is decomposed once

        def collapser(moments, n_components, retain_basis):
            if id(moments) not in made:
                made[id(moments)] = self._collapser(moments, n_components, retain_basis)
            return made[id(moments)]

        self.collapsers = {name: (collapser(stats.acts, self.config.act_components, self.retain_bases.get((name, "acts"))),
                                  collapser(stats.grads, self.config.grad_components,
                                            self.retain_bases.get((name, "grads"))))
                           for name, stats in self.stats.items()}

    def _collapser(self, moments: StreamingMoments, n_components: int, retain_basis: torch.Tensor | None = None):
        if self.config.collapse == "soft":
            vectors, keep = soft_basis(moments, self.config.soft_components)
            return lambda x: soft_collapse(x, vectors, keep)
        basis = common_basis(moments, n_components)
        if retain_basis is not None:  # the forget set's common span and the retain facts' together
            basis = orthonormal_rows(torch.cat([basis, retain_basis])).float()
        return lambda x: collapse(x, basis)

    # -- one forget batch --------------------------------------------------------------
    def _acts_and_grads(self, batch, reference, stats_tokens: str | None = None) -> tuple[float, dict, dict]:
        """Forward to the last loss layer, backward to the activations only; this pass's
        statistics updated from the `stats_tokens` rows; per module the (N, d) inputs and output
        gradients on the rows the update is formed from. With several processes the gradients
        are scaled by this process's share of the loss's terms: they are then the gradients of
        the whole batch's loss."""
        acts, grads = {}, {}
        with activations_require_grad(self.model), capture_acts_and_grads(self.modules, acts, grads), \
                torch.enable_grad():
            loss = self.forget_loss(self.model, batch, reference)
            loss.backward()
        n_terms = terms(self.forget_loss, batch)
        value, weight = self._whole_batch(loss, n_terms)
        if weight != 1.0:
            grads = {n: g * weight if n_terms else torch.zeros_like(g) for n, g in grads.items()}
        acts = {n: a for n, a in acts.items() if n in grads}
        if not self.stats:
            self._stats_for(acts, grads)
        mask = batch.token_mask
        acts = {n: a[mask] for n, a in acts.items()}
        grads = {n: g[mask] for n, g in grads.items()}
        predicts = predicting(batch)[mask]  # real tokens that predict an answer token
        rows = predicts if (stats_tokens or self.config.stats_tokens) == "answer" else slice(None)
        seen = set()
        for name, stats in self.stats.items():
            if id(stats.acts) not in seen:  # a shared `acts` object counts each token once
                seen.add(id(stats.acts))
                stats.acts.update(acts[name][rows])
            stats.grads.update(grads[name][rows])
        chosen = update_rows(batch, self.config.update_tokens)
        if not isinstance(chosen, slice):
            acts, grads = {n: a[chosen] for n, a in acts.items()}, {n: g[chosen] for n, g in grads.items()}
        return value, acts, grads

    def _collect_retain_bases(self) -> None:
        """Retain-aware collapse: per module, the mean and top `retain_components` PCs of the
        retain facts' activations and output gradients at their `retain_tokens` positions."""
        self._new_stats()
        for batch in self.bar(self.retain_facts, "statistics (facts to keep)"):
            self._acts_and_grads(batch, self.forget_loss.reference(self.model, batch),
                                 stats_tokens=self.config.retain_tokens)
        self._reduce_stats()
        k = self.config.retain_components
        bases = {}  # id(moments) -> basis: gate_proj and up_proj share their inputs' moments
        for name, stats in self.stats.items():
            for kind in ("acts", "grads"):
                moments = getattr(stats, kind)
                if id(moments) not in bases:
                    bases[id(moments)] = common_basis(moments, k)
                self.retain_bases[(name, kind)] = bases[id(moments)]
        self._new_stats()

    def prepare(self) -> None:
        """Pass 0: statistics only, no update (first the retain facts', for the retain-aware collapse)."""
        if self.config.retain_components and self.retain_facts and self.config.collapse == "paper":
            self._collect_retain_bases()
        self._new_stats()
        for index in self.bar(self.epoch_batches(0), "statistics (epoch 0)"):
            self._acts_and_grads(self.forget[index], self.forget_refs[index])
        self._finish_stats()

    def forget_gradients(self, index: int):
        """Per module, the collapsed update summed over every process's tokens; under FSDP each
        process keeps only its slice, one module at a time (Method.step takes the global norm)."""
        loss, acts, grads = self._acts_and_grads(self.forget[index], self.forget_refs[index])
        updates = {}
        for name, module in self.modules.items():
            if name not in grads:  # after the last loss layer: no forget gradient, only retain steps
                updates[name] = torch.zeros_like(module.weight)  # laid out like the weight (sharded or not)
                continue
            collapse_acts, collapse_grads = self.collapsers[name]
            a, g = acts[name].float(), grads[name].float()  # bfloat16 would round the collapsed rows
            if collapse_acts is not None:
                a, g = collapse_acts(a), collapse_grads(g)
            update = weight_grad_from(module, g, a).to(module.weight.dtype)  # sum_t g_t a_t^T, stored as the weight
            summed = distributed.weighted_sum({name: update})[name]
            updates[name] = distributed.local_part(module.weight, summed)
        return loss, updates

    def run_epoch(self, epoch: int) -> dict:
        self._new_stats()
        result = super().run_epoch(epoch)
        self._finish_stats()
        return result
