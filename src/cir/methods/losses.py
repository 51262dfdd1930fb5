"""Forget losses and the retain loss. Each loss runs its own (possibly truncated) forward
pass and compares against references taken from the original model once, at setup.

    mlp_breaking       mean over loss layers and tokens of max(0, <o_t, o0_t> / n^2), where o
                       is the MLP output, o0 the original one and n the batch's mean ||o0||:
                       drives each MLP output away from its original direction (CIR default).
    circuit_breaker    mean of max(0, cos(h_t, h0_t)) on the residual stream after each loss
                       layer (circuit breakers as adapted in the CIR paper).
    neg_cross_entropy  minus the cross-entropy of the answer tokens.
    true_logit         the answer token's logit above the mean logit, clipped at 0.
    saturating_logit   per answer token, softplus of that margin's change from the original
                       model's plus 2: its gradient fades once the token is forgotten.
    bounded_logit      per answer token, the true logit above the best other token's, clipped
                       at 0: stops once another token is as likely (no retain model needed).
    saturating_sequence  per sentence, NPO's loss of the answer's log-likelihood ratio to the
                       original model: its gradient fades once the sentence is forgotten.

Shared pieces for methods with losses of their own (cir.methods): `sequence_logprob`, `npo_loss`,
`ResidualStreamLoss`, and `CrossEntropyRetain` (a retain loss on general text).

Every loss is a mean; `terms(loss, batch)` is the number of terms it averages over on a batch
(real tokens unless the loss says otherwise with a `count` method). With several processes
each holds a shard of the batch, and the shards' gradients are weighted by these counts
(cir.distributed); normalisers taken over the batch use `global_mean`, so a shard's loss is
the same function as the whole batch's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cir.errors import OptionError
from cir.architecture import body_and_head, decoder_layers, forward_until, head_logits, mlp_of
from cir.training.batches import Batch
from cir.distributed import global_mean, is_sharded
from cir.training.hooks import record_outputs
from cir.registry import registrar

FORGET_LOSSES = {}
register_loss = registrar(FORGET_LOSSES, "forget loss")


def terms(loss, batch: Batch) -> int:
    """How many terms `loss` averages over on `batch`."""
    count = getattr(loss, "count", None)
    return int(count(batch)) if count is not None else batch.n_tokens()


def answer_targets(batch: Batch) -> int:
    """Answer tokens that are prediction targets (position t predicts token t + 1)."""
    return int(batch.answer_mask[:, 1:].sum())


def next_token_targets(batch: Batch) -> int:
    return int(batch.token_mask[:, 1:].sum())


def predicting(batch: Batch) -> torch.Tensor:
    """(B, T) bool: the positions whose next token is an answer token (position t predicts t + 1)."""
    positions = torch.zeros_like(batch.answer_mask)
    positions[:, :-1] = batch.answer_mask[:, 1:]
    return positions


def logits_at(model, batch: Batch, positions: torch.Tensor) -> torch.Tensor:
    """(N, V) float32 logits at the marked positions only (row-major order): the body runs on
    the whole batch, the output head (a fifth of a forward pass with a 49k vocabulary) on the
    few positions a loss reads. Under FSDP, where the head belongs to the root's gathered
    parameters, the whole model runs instead (the same values)."""
    if is_sharded(model):
        return model(**batch.inputs(), use_cache=False).logits[positions].float()
    body = body_and_head(model)[0]
    hidden = body(**batch.inputs(), use_cache=False).last_hidden_state
    return head_logits(model, hidden[positions])


def make_forget_loss(name: str, model, loss_layers: list[int]):
    if name not in FORGET_LOSSES:
        raise OptionError(f"unknown forget loss '{name}' (known: {', '.join(FORGET_LOSSES)})")
    return FORGET_LOSSES[name](model, loss_layers)


class _LayerOutputLoss:
    """A loss on the outputs of some modules at the loss layers, against their original values."""

    def __init__(self, model, loss_layers: list[int]):
        self.loss_layers = list(loss_layers)
        self.last_layer = max(self.loss_layers)
        self.modules = {str(i): self.module_at(model, i) for i in self.loss_layers}

    def module_at(self, model, layer_id):
        raise NotImplementedError

    def outputs(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        """(N, D) outputs per loss layer on the batch's real tokens."""
        store = {}
        with record_outputs(self.modules, store):
            forward_until(model, self.last_layer, **batch.inputs())
        return {name: out[batch.token_mask] for name, out in store.items()}

    @torch.no_grad()
    def reference(self, model, batch: Batch) -> dict[str, torch.Tensor]:
        return {name: out.detach() for name, out in self.outputs(model, batch).items()}


@register_loss("mlp_breaking")
class MLPBreaking(_LayerOutputLoss):
    def module_at(self, model, layer_id):
        return mlp_of(model, layer_id)

    def __call__(self, model, batch: Batch, reference) -> torch.Tensor:
        losses = []
        for name, out in self.outputs(model, batch).items():
            original = reference[name]
            scale = global_mean(original.norm(dim=-1))
            losses.append(((out * original).sum(-1) / scale**2).clamp_min(0).mean())
        return torch.stack(losses).mean()


class ResidualStreamLoss(_LayerOutputLoss):
    """A loss on the residual stream after each loss layer (the decoder block's output)."""

    def module_at(self, model, layer_id):
        return decoder_layers(model)[layer_id]


@register_loss("circuit_breaker")
class CircuitBreaker(ResidualStreamLoss):
    def __call__(self, model, batch: Batch, reference) -> torch.Tensor:
        losses = [F.cosine_similarity(out, reference[name], dim=-1).clamp_min(0).mean()
                  for name, out in self.outputs(model, batch).items()]
        return torch.stack(losses).mean()


class _AnswerTokenLoss:
    """A loss on the logits that predict the answer tokens; needs the whole forward pass."""

    last_layer = None  # all layers
    count = staticmethod(answer_targets)

    def __init__(self, model, loss_layers=None):
        pass

    def reference(self, model, batch: Batch):
        return None

    @staticmethod
    def answer_logits(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, V) at the positions that predict an answer token, those tokens (N,))."""
        targets_mask = batch.answer_mask[:, 1:]
        return logits_at(model, batch, predicting(batch)), batch.input_ids[:, 1:][targets_mask]


@register_loss("neg_cross_entropy")
class NegativeCrossEntropy(_AnswerTokenLoss):
    def __call__(self, model, batch: Batch, reference=None) -> torch.Tensor:
        logits, targets = self.answer_logits(model, batch)
        return -F.cross_entropy(logits, targets)


@register_loss("true_logit")
class TrueLogit(_AnswerTokenLoss):
    def __call__(self, model, batch: Batch, reference=None) -> torch.Tensor:
        logits, targets = self.answer_logits(model, batch)
        true = logits.gather(1, targets[:, None])[:, 0]
        return (true - logits.mean(-1)).clamp_min(0).mean()


@register_loss("saturating_logit")
class SaturatingLogit(_AnswerTokenLoss):
    """Per answer token, softplus(m - m0 + 2), with m the true logit above the mean logit and m0
    its value in the original model: d loss / d m = sigmoid(m - m0 + 2), 0.88 at the start, 0.5
    once the margin fell by 2 and near 0 past that, so the normalised step goes to the tokens
    not yet forgotten instead of pushing those already gone further down."""

    offset = 2.0

    @staticmethod
    def margins(model, batch: Batch) -> torch.Tensor:
        logits, targets = _AnswerTokenLoss.answer_logits(model, batch)
        return logits.gather(1, targets[:, None])[:, 0] - logits.mean(-1)

    @torch.no_grad()
    def reference(self, model, batch: Batch) -> torch.Tensor:
        return self.margins(model, batch).detach()

    def __call__(self, model, batch: Batch, reference: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.margins(model, batch) - reference + self.offset).mean()


@register_loss("bounded_logit")
class BoundedLogit(_AnswerTokenLoss):
    """Per answer token, max(0, z - z_alt): its logit z above the best other token's, z_alt. Its
    gradient is 0 once another token is at least as likely: each forgotten token is pushed to the
    level of the model's own best alternative under the same prompt, not below it (an answer far
    less likely than a stranger's betrays the erasure to a membership test), and needs no retain
    model to know where to stop."""

    def __call__(self, model, batch: Batch, reference=None) -> torch.Tensor:
        logits, targets = self.answer_logits(model, batch)
        true = logits.gather(1, targets[:, None])[:, 0]
        others = logits.scatter(1, targets[:, None], float("-inf"))
        return torch.relu(true - others.max(-1).values).mean()  # a tie takes no gradient


@register_loss("saturating_sequence")
class SaturatingSequence:
    """Per sentence, NPO's loss of x = log p(answer) - log p0(answer) (the original model's,
    cached): -(2/beta) log sigmoid(-beta x), whose gradient fades as the sentence's answer
    becomes less likely than it was (beta = 1 as a loss of the registry; NPO sets its own)."""

    last_layer = None  # needs the whole model

    def __init__(self, model=None, loss_layers=None, beta: float = 1.0):
        self.beta = beta

    @staticmethod
    def count(batch: Batch) -> int:
        return len(batch)

    @torch.no_grad()
    def reference(self, model, batch: Batch) -> torch.Tensor:
        return sequence_logprob(model, batch)[0].detach()

    def __call__(self, model, batch: Batch, reference: torch.Tensor) -> torch.Tensor:
        return npo_loss(sequence_logprob(model, batch)[0] - reference, self.beta)


def sentences(batch: Batch) -> int:
    return len(batch)


def sequence_logprob(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sentence: (sum of log p(answer token | prefix), number of answer tokens)."""
    mask = batch.answer_mask[:, 1:]
    logits = logits_at(model, batch, predicting(batch))
    logp = logits.log_softmax(-1).gather(1, batch.input_ids[:, 1:][mask][:, None])[:, 0]
    rows = mask.nonzero()[:, 0]  # the sentence of each answer token, in the order of `logits`
    sums = torch.zeros(len(batch), dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)
    return sums, mask.sum(1)


def npo_loss(x: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) mean_i log sigmoid(-beta x_i): the NPO family's loss of a per-sentence score x_i
    (log-likelihood ratio for NPO, normalised log-likelihood for SimNPO). Falls towards 0 as x falls."""
    return -(2.0 / beta) * F.logsigmoid(-beta * x).mean()


class CrossEntropyRetain:
    """Retain loss: next-token cross-entropy on the real tokens of general text (the `layer_id`
    argument is accepted for the common interface and unused)."""

    count = staticmethod(next_token_targets)

    def __init__(self, model=None, layer_id: int | None = None):
        pass

    def reference(self, model, batch: Batch):
        return None

    def __call__(self, model, batch: Batch, reference=None) -> torch.Tensor:
        logits = model(**batch.inputs(), use_cache=False).logits[:, :-1]
        mask = batch.token_mask[:, 1:]
        return F.cross_entropy(logits[mask].float(), batch.input_ids[:, 1:][mask])


class HiddenStateRetain:
    """Retain loss: mean over tokens of ||h_t - h0_t|| / mean ||h0|| at the residual stream
    after the last trained layer, on general text."""

    def __init__(self, model, layer_id: int):
        self.layer_id = layer_id
        self.modules = {"h": decoder_layers(model)[layer_id]}

    def hidden(self, model, batch: Batch) -> torch.Tensor:
        store = {}
        with record_outputs(self.modules, store):
            forward_until(model, self.layer_id, **batch.inputs())
        return store["h"][batch.token_mask]

    @torch.no_grad()
    def reference(self, model, batch: Batch) -> torch.Tensor:
        return self.hidden(model, batch).detach()

    def __call__(self, model, batch: Batch, reference: torch.Tensor) -> torch.Tensor:
        return (self.hidden(model, batch) - reference).norm(dim=-1).mean() / global_mean(reference.norm(dim=-1))
