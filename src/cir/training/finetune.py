"""Plain fine-tuning on fact sentences: teaching synthetic facts, and the relearning attack."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from cir import distributed
from cir.architecture import mlp_projections, decoder_layers
from cir.errors import DivergedError, OptionError
from cir.evaluation.scoring import encode_texts, pad
from cir.models import master_copies, non_finite_count


def select_parameters(model, which: str = "all") -> list[torch.nn.Parameter]:
    """`all` weights, or only the `mlp` projections of every layer."""
    if which == "all":
        return [p for p in model.parameters()]
    if which == "mlp":
        n = len(decoder_layers(model))
        return [m.weight for m in mlp_projections(model, range(n)).values()]
    raise OptionError(f"unknown parameter set '{which}' (all, mlp)")


BATCHING = ("shuffled", "by_length")
MAX_LENGTH = 64  # tokens of a training sentence (longer ones are cut)


def index_batches(lengths: list[int], batch_size: int, rng: random.Random, batching: str = "shuffled"):
    """Batches of sentences, as their indices (given their lengths in tokens), in a new order
    every epoch. `shuffled`: any sentences together; `by_length`: the shuffled sentences sorted by
    length, cut into batches, the batches shuffled, so that a batch pads little (texts of very
    different lengths, such as short facts beside general-text passages, would otherwise pad most
    batches to the longest)."""
    if batching not in BATCHING:
        raise OptionError(f"batching must be one of {', '.join(BATCHING)}, got '{batching}'")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    starts = list(range(0, len(order), batch_size))
    if batching == "by_length":
        order.sort(key=lambda i: lengths[i])  # stable: equal lengths stay shuffled
        rng.shuffle(starts)
    for start in starts:
        yield order[start : start + batch_size]


def _synchronise(model, params: list[torch.nn.Parameter]) -> None:
    """With several processes: sum the processes' gradients (each of its loss scaled by its
    share of the batch's targets), giving the gradient of the mean over every target. Under
    FSDP the backward pass has already summed them into each process's slice."""
    if not distributed.launched() or distributed.is_sharded(model):
        return
    grads = {i: (p.grad if p.grad is not None else torch.zeros_like(p)) for i, p in enumerate(params)}
    for i, g in distributed.weighted_sum(grads).items():
        params[i].grad = g


def causal_lm_loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the non-padding tokens."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                             ignore_index=-100)


def next_token_distributions(model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's next-token distributions at every position but the last, in float32 and
    without gradient, as kept_prediction_loss reads them: the probabilities (B, T - 1,
    vocabulary) and, per position, their sum of p log p (B, T - 1)."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1)
        probs = logp.exp()
        return probs, (probs * logp).sum(-1)


class TeacherPredictions:
    """A frozen teacher's next-token distributions on each kept text, computed in the batch where
    the text first comes and reused in every later epoch: the teacher does not change, so it
    would compute the same again (to rounding). They are held on the CPU, positions x vocabulary
    floats per text (84 texts of 64 tokens at a 49,152-word vocabulary: 1 GB), up to `max_bytes`:
    the texts past it are read by the teacher in every batch they come in. The teacher must be a
    whole model, not one sharded across processes."""

    def __init__(self, teacher, max_bytes: int = 4 * 2**30):
        self.teacher, self.max_bytes, self.held = teacher, max_bytes, 0
        self.rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, texts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The distributions (next_token_distributions) of the batch (`ids`, `mask`,
        right-padded) whose rows are the kept texts numbered `texts`, zero at the padding."""
        new = [row for row, text in enumerate(texts) if text not in self.rows]
        read = dict(zip(new, zip(*next_token_distributions(self.teacher, ids[new], mask[new])))) if new else {}
        width = (read[new[0]] if new else self.rows[texts[0]])[0].shape[-1]  # the vocabulary
        probs = torch.zeros((len(texts), ids.shape[1] - 1, width), device=ids.device)
        negentropy = torch.zeros(probs.shape[:2], device=ids.device)
        for row, text in enumerate(texts):
            n = int(mask[row].sum()) - 1
            p, h = self.rows[text] if text in self.rows else (read[row][0][:n], read[row][1][:n])
            probs[row, :n], negentropy[row, :n] = p, h
            if text not in self.rows and self.held + p.nbytes <= self.max_bytes:
                self.rows[text] = (p.to("cpu", copy=True), h.to("cpu", copy=True))  # not a view of the batch
                self.held += p.nbytes
        return probs, negentropy


def kept_prediction_loss(model, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor,
                         target: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Mean over the non-padding targets of cross-entropy on the rows where `keep` is false and,
    on the rows where it is true, KL(teacher || model) of the next-token distributions: there the
    model is trained to keep the teacher's predictions, not to learn the text's tokens.
    `target`: the teacher's distributions on the kept rows (next_token_distributions, or
    TeacherPredictions); None when no row is kept."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    per_token = logits.new_zeros(logits.shape[:2])
    if not keep.all():
        learn = ~keep
        targets = ids[learn, 1:].masked_fill(mask[learn, 1:] == 0, -100)
        per_token[learn] = torch.nn.functional.cross_entropy(logits[learn].transpose(1, 2), targets,
                                                             ignore_index=-100, reduction="none")
    if keep.any():
        probs, negentropy = target
        per_token[keep] = negentropy - (probs * torch.log_softmax(logits[keep], -1)).sum(-1)
    weight = mask[:, 1:].to(per_token.dtype)
    return (per_token * weight).sum() / weight.sum().clamp(min=1)


def check_schedule(epochs: int, lr: float, names: tuple[str, str] = ("epochs", "lr")) -> None:
    """Refuse, before anything is loaded or trained, a number of epochs below 1 or a learning
    rate that is not a finite number > 0; `names`: how the caller spells the two (--epochs)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise OptionError(f"{names[0]} must be an integer >= 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise OptionError(f"{names[1]} must be a finite number > 0, got {lr!r}")


def _check_finite(loss: float, params: list[torch.nn.Parameter], epoch: int, lr: float) -> None:
    """Stop training whose loss or weights are no longer finite (every process together)."""
    if math.isfinite(loss):
        bad = round(distributed.sum_scalar(float(non_finite_count(p.detach() for p in params))))
        if not bad:
            return
        what = f"{bad:,} weights became NaN or infinite"
    else:
        what = f"the loss became {loss}"
    raise DivergedError(f"training diverged in epoch {epoch + 1}: {what} (learning rate {lr:g} is too large)",
                        reason=what)


# A fine-tune that broke the model, judged by what it did to it (non-finite numbers are only the
# last sign): the trained weights' norm grew more than MAX_NORM_GROWTH-fold (Adam on every weight
# of a tiny Llama grows it 1.4-fold at lr 1e-3 in 12 epochs, 1.8-fold at 3e-3 in 30, 2.2-fold at
# 1e-2 in 6; at 1000, 100,000-fold), or the last epoch's mean loss ended above where training
# began (the mean loss of the first epoch's batches before any step) by more than
# MAX_LOSS_RISE-fold and LOSS_SLACK: a learning rate too large for the model leaves its loss far
# above its start (a taught tiny model's 0.73 on its facts ends at 3.1 under Adam at 0.1), where
# fine-tuning lowers it
MAX_NORM_GROWTH = 10.0
MAX_LOSS_RISE, LOSS_SLACK = 1.25, 0.1


def broken_by(start_loss: float, last_loss: float, norm_before: float, norm_after: float) -> str | None:
    """Why a fine-tune broke the model, in words (judged by effect, as above); None where it did not."""
    if norm_before > 0 and norm_after > MAX_NORM_GROWTH * norm_before:
        return (f"the trained weights' norm grew {norm_after / norm_before:,.0f}-fold "
                f"(from {norm_before:.3g} to {norm_after:.3g})")
    if last_loss > MAX_LOSS_RISE * start_loss + LOSS_SLACK:
        return (f"its loss rose past where it began (from {start_loss:.3f} before training to "
                f"{last_loss:.3f} in the last epoch)")
    return None


def weight_norm(params: list[torch.nn.Parameter]) -> float:
    """The L2 norm of `params` together (sharded ones counting every process's slice)."""
    with torch.no_grad():
        return float(distributed.global_norm([p.detach() for p in params]))


def finetune(model, tokenizer, sentences: list[str], *, epochs: int = 3, lr: float = 1e-4, optimizer: str = "adam",
             params: str | list = "all", batch_size: int = 16, seed: int = 0, batching: str = "shuffled",
             keep: list[str] = (), teacher=None,
             on_epoch: Callable[[int, float], None] | None = None, progress: bool = True) -> list[float]:
    """Fine-tune with cross-entropy on `sentences`; returns the mean loss of each epoch (with
    `keep`, the mean over tokens of cross-entropy and KL together). Weights held in bfloat16 or
    float16 are trained through float32 master copies (the optimizer's steps accumulate there).
    Training that breaks the model raises DivergedError: a loss or weight that is no longer
    finite (at once), a loss that ends far above where it began or weights grown far beyond their
    norm (`broken_by`, after the last epoch).

    `on_epoch(epoch, loss)` is called after each epoch (the relearning attack evaluates there).
    `batching`: how sentences are put into batches (index_batches).
    `keep`: texts batched beside `sentences` on which the model is trained to keep `teacher`'s
    next-token distributions (kept_prediction_loss), e.g. general text with the model before
    training as the teacher.
    Under a launcher each process trains on its rows of every batch and the gradients are
    combined (cir.distributed), so the processes stay identical.
    """
    check_schedule(epochs, lr)
    if keep and (teacher is None or teacher is model):
        raise OptionError("texts to keep the predictions of need a teacher model that predicts them, other than "
                         "the model trained")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    trainable = select_parameters(model, params) if isinstance(params, str) else params
    trainable_ids = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable_ids)
    # the optimizer steps a float32 master copy of each weight held in bfloat16 or float16, and
    # the weight is cast from it after each step (the passes stay in the model's precision): a
    # step below the weight's resolution (Adam at lr 3e-5 on a weight near 0.02, whose bfloat16
    # spacing is 1.2e-4) would otherwise be rounded away, and a bfloat16 model would learn less
    # than a float32 one from the same sentences (teaching falls short; the relearning attack is
    # weaker than it is on float32 weights)
    masters = master_copies(dict(enumerate(trainable)))
    stepped = [masters.get(i, p) for i, p in enumerate(trainable)]
    if optimizer == "adam":
        opt = torch.optim.Adam(stepped, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(stepped, lr=lr)
    else:
        raise OptionError(f"unknown optimizer '{optimizer}' (adam, sgd)")
    device = next(model.parameters()).device
    encoded = encode_texts(tokenizer, [*sentences, *keep], MAX_LENGTH)
    lengths = [len(ids) for ids in encoded]
    predictions = TeacherPredictions(teacher) if keep else None

    def batch_loss(batch: list[int]) -> tuple[torch.Tensor, float]:
        """(the loss of this process's rows of `batch`, their share of the batch's targets)."""
        rows = batch[distributed.shard_rows(len(batch), allow_empty=True)]
        # a process left without rows runs the last row at weight 0: under FSDP every
        # process takes part in every forward and backward pass
        used = rows or batch[-1:]
        ids, mask = pad([encoded[i] for i in used], tokenizer.pad_token_id, device)
        weight = distributed.share(int(mask[:, 1:].sum()) if rows else 0)
        kept = [i for i in used if i >= len(sentences)]
        if not kept:
            return causal_lm_loss(model, ids, mask), weight
        is_kept = torch.tensor([i >= len(sentences) for i in used], device=device)
        return kept_prediction_loss(model, ids, mask, is_kept, predictions(ids[is_kept], mask[is_kept], kept)), weight

    model.train()
    norm_before = weight_norm(trainable)
    with torch.no_grad():  # where training begins: the first epoch's batches, before any step
        start = [distributed.sum_scalar(float(loss) * weight) for loss, weight in
                 map(batch_loss, index_batches(lengths, batch_size, random.Random(seed), batching))]
    start_loss = sum(start) / max(len(start), 1)
    losses = []
    bar = tqdm(range(epochs), desc="fine-tune", disable=not progress or not distributed.is_main(), leave=False)
    for epoch in bar:
        total, steps = 0.0, 0
        for batch in index_batches(lengths, batch_size, rng, batching):
            opt.zero_grad(set_to_none=True)
            loss, weight = batch_loss(batch)
            (loss * weight).backward()
            _synchronise(model, trainable)
            step_loss = distributed.sum_scalar(float(loss.detach()) * weight)
            if not math.isfinite(step_loss):
                _check_finite(step_loss, trainable, epoch, lr)
            for i, master in masters.items():
                grad, trainable[i].grad = trainable[i].grad, None
                master.grad = None if grad is None else grad.float()
            opt.step()
            with torch.no_grad():
                for i, master in masters.items():
                    trainable[i].copy_(master)
            total += step_loss
            steps += 1
        losses.append(total / max(steps, 1))
        _check_finite(losses[-1], trainable, epoch, lr)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, losses[-1])
            model.train()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    reason = broken_by(start_loss, losses[-1], norm_before, weight_norm(trainable))
    if reason is not None:
        raise DivergedError(f"training diverged: {reason} (learning rate {lr:g} is too large)", reason=reason)
    return losses
