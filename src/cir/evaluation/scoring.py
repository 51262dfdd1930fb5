"""What a model knows: multiple-choice accuracy (cloze or letters) and loss / KL on text.

cloze:   log P(" choice" | "Question: {question}\\nAnswer:") summed over the choice's tokens;
         the highest-scoring choice is the model's answer.
letters: the lm-evaluation-harness WMDP prompt (question, lettered choices, "Answer:");
         argmax over " A", " B", ..., and P(correct letter) renormalised over the letters.
answer_only: log P(" choice" | "Answer:"), the question left out: what a model that knows none
         of the facts can still get by preferring likelier answers. A fact set whose answer-only
         accuracy is far above chance does not measure knowledge well.
"""

from __future__ import annotations

import functools
import math
import string
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cir import distributed
from cir.architecture import body_and_head, head_logits
from cir.data.mcq import MCQ
from cir.errors import InputError, OptionError

LETTERS = string.ascii_uppercase


def cloze_prompt(question: str) -> str:
    return f"Question: {question.strip()}\nAnswer:"


def letters_prompt(item: MCQ, subject: str = "general knowledge") -> str:
    lines = [f"The following are multiple choice questions (with answers) about {subject}.", "", item.question.strip()]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(item.choices)]
    return "\n".join(lines) + "\nAnswer:"


def context_length(model) -> int | None:
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def check_context(model, n_tokens: int, text: str) -> None:
    """Refuse a prompt longer than the model's context (its attention would need memory for it)."""
    limit = context_length(model)
    if limit is not None and n_tokens > limit:
        words = " ".join(text.split()[:8])
        raise InputError(f"prompt '{words} ...' is {n_tokens} tokens, longer than the model's context of {limit}")


def pad(sequences: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token sequences padded on the right to the longest: (B, T) each."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def _root_gathered(fn):
    """For functions that call the model's body and head separately: under FSDP, the root's
    own parameters (embeddings, final norm, head) are gathered for the call."""

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with distributed.root_gathered(model):
            return fn(model, *args, **kwargs)

    return wrapper


def _shared_sequences(encoded: list[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[tuple[int, int, int]]]]:
    """The sequences to run for (context, continuation) token pairs, each with its reads
    (pair, position, target token). A continuation's first token is predicted at the context's
    last position, which is the same in every sequence that starts with that context (the model
    is causal): one-token continuations read it from a sequence run for another continuation of
    the context, or from the context alone; only longer continuations need a sequence each."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        by_context.setdefault(tuple(ctx), []).append(i)
    sequences = []
    for ctx, pairs in by_context.items():
        longer = [i for i in pairs if len(encoded[i][1]) > 1]
        single = [(i, len(ctx) - 1, encoded[i][1][0]) for i in pairs if len(encoded[i][1]) == 1]
        if not longer:
            sequences.append((list(ctx), single))
            continue
        for n, i in enumerate(longer):
            cont = encoded[i][1]
            reads = [(i, len(ctx) + k - 1, token) for k, token in enumerate(cont)]  # position t predicts t + 1
            sequences.append((list(ctx) + cont, reads + (single if n == 0 else [])))
    return sequences


@torch.no_grad()
@_root_gathered
def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 64,
                          first_token: list[bool] | None = None) -> list[float]:
    """Summed log P(continuation | context) for each (context, continuation) pair; for the pairs
    marked in `first_token`, log P of the continuation's first token only.

    Continuations of one context share its forward pass where they can (`_shared_sequences`:
    the four choices of a question whose answers are single tokens take one sequence, not
    four), and only the positions that predict continuation tokens go through the output
    head, which is a large share of the compute on small models with big vocabularies.
    """
    base = body_and_head(model)[0]
    encoded = []
    for i, (context, continuation) in enumerate(pairs):
        ctx = tokenizer(context)["input_ids"]
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        check_context(model, len(ctx) + len(cont), context + continuation)
        encoded.append((ctx, cont[:1] if first_token is not None and first_token[i] else cont))
    sequences = sorted(_shared_sequences(encoded), key=lambda s: -len(s[0]))
    scores = [0.0] * len(encoded)
    device = next(model.parameters()).device
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        ids, mask = pad([seq for seq, _ in chunk], tokenizer.pad_token_id, device)
        hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # (B, T, D)
        reads = [(b, *read) for b, (_, row_reads) in enumerate(chunk) for read in row_reads]
        if not reads:
            continue
        rows, owners, positions, targets = zip(*reads)
        logits = head_logits(model, hidden[list(rows), list(positions)])  # (N, V)
        token_logprobs = logits.log_softmax(-1).gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
        for i, value in zip(owners, token_logprobs.tolist()):
            scores[i] += value
    return scores


@dataclass
class MCQResult:
    accuracy: float
    n: int
    correct_prob: float  # mean probability of the correct choice, renormalised over the choices
    correct: list[bool]
    probs: list[float] = field(default_factory=list)  # per item: P(correct), renormalised over the choices
    lowest: list[bool] = field(default_factory=list)  # per item: the correct choice scored below every other
    # per item: the correct answer's own probability under its prompt, not renormalised over the
    # choices: the geometric mean of its tokens' probabilities (RepSelect's score)
    answer_probs: list[float] = field(default_factory=list)

    @property
    def answer_prob(self) -> float | None:
        return sum(self.answer_probs) / len(self.answer_probs) if self.answer_probs else None

    def to_json(self) -> dict:
        return {"accuracy": self.accuracy, "n": self.n, "correct_prob": self.correct_prob}


def _result(choice_scores: list[torch.Tensor], items: list[MCQ], answer_tokens: list[int] | None = None) -> MCQResult:
    """`answer_tokens`: per item, the tokens its correct choice's score sums over (1 each when None)."""
    correct, probs, lowest, answer_probs = [], [], [], []
    for k, (scores, item) in enumerate(zip(choice_scores, items)):
        correct.append(int(scores.argmax()) == item.answer)
        probs.append(float(scores.softmax(-1)[item.answer]))
        lowest.append(int(scores.argmin()) == item.answer)
        answer_probs.append(math.exp(float(scores[item.answer]) / (answer_tokens[k] if answer_tokens else 1)))
    n = len(items)
    return MCQResult(accuracy=sum(correct) / n, n=n, correct_prob=sum(probs) / n, correct=correct, probs=probs,
                     lowest=lowest, answer_probs=answer_probs)


def evaluate_prompts(model, tokenizer, items: list[MCQ], prompts: list[str], batch_size: int = 64,
                     first_token: list[bool] | None = None) -> MCQResult:
    """Score each item's choices by log P(" choice" | its prompt); for the items marked in
    `first_token`, by the log P of the choice's first token only."""
    pairs = [(prompt, " " + choice) for prompt, item in zip(prompts, items) for choice in item.choices]
    flags = None if first_token is None else [flag for flag, item in zip(first_token, items) for _ in item.choices]
    flat = continuation_logprobs(model, tokenizer, pairs, batch_size, flags)
    scores, k = [], 0
    for item in items:
        scores.append(torch.tensor(flat[k : k + len(item.choices)]))
        k += len(item.choices)
    answer_tokens = [1 if first_token is not None and first_token[i]
                     else max(1, len(tokenizer(" " + item.choices[item.answer], add_special_tokens=False)["input_ids"]))
                     for i, item in enumerate(items)]
    return _result(scores, items, answer_tokens)


def evaluate_cloze(model, tokenizer, items: list[MCQ], batch_size: int = 64) -> MCQResult:
    return evaluate_prompts(model, tokenizer, items, [cloze_prompt(item.question) for item in items], batch_size)


@torch.no_grad()
@_root_gathered
def evaluate_letters(model, tokenizer, items: list[MCQ], subject: str = "general knowledge",
                     batch_size: int = 32) -> MCQResult:
    base = body_and_head(model)[0]
    device = next(model.parameters()).device
    scores = []
    for item in items:
        if len(item.choices) > len(LETTERS):
            raise InputError(f"question '{' '.join(item.question.split()[:8])} ...' has {len(item.choices)} choices, "
                             f"more than the {len(LETTERS)} letters")
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        seqs = [tokenizer(letters_prompt(item, subject))["input_ids"] for item in batch]
        for seq, item in zip(seqs, batch):
            check_context(model, len(seq), item.question)
        ids, mask = pad(seqs, tokenizer.pad_token_id, device)
        hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        last = hidden[torch.arange(len(batch)), mask.sum(1) - 1]
        logits = head_logits(model, last)
        for row, item in enumerate(batch):
            letter_ids = [tokenizer(" " + LETTERS[i], add_special_tokens=False)["input_ids"][-1]
                          for i in range(len(item.choices))]
            scores.append(logits[row, letter_ids].log_softmax(-1).cpu())
    return _result(scores, items)


def evaluate_answer_only(model, tokenizer, items: list[MCQ], batch_size: int = 64) -> MCQResult:
    return evaluate_prompts(model, tokenizer, items, ["Answer:"] * len(items), batch_size)


MCQ_FORMATS = {"cloze": evaluate_cloze, "letters": evaluate_letters, "answer_only": evaluate_answer_only}


def evaluate_mcq(model, tokenizer, items: list[MCQ], fmt: str = "cloze", **kwargs) -> MCQResult:
    if fmt not in MCQ_FORMATS:
        raise OptionError(f"unknown MCQ format '{fmt}' ({', '.join(MCQ_FORMATS)})")
    return MCQ_FORMATS[fmt](model, tokenizer, items, **kwargs)


def encode_texts(tokenizer, texts: list[str], max_length: int = 128) -> list[list[int]]:
    return [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]


def _text_batches(tokenizer, texts, max_length, batch_size, device):
    seqs = [s for s in encode_texts(tokenizer, texts, max_length) if len(s) >= 2]
    seqs.sort(key=len, reverse=True)
    for start in range(0, len(seqs), batch_size):
        yield pad(seqs[start : start + batch_size], tokenizer.pad_token_id, device)


@torch.no_grad()
def text_loss(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over all tokens of the texts."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for ids, mask in _text_batches(tokenizer, texts, max_length, batch_size, device):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        targets = ids[:, 1:]
        valid = mask[:, 1:].bool()
        losses = F.cross_entropy(logits[valid], targets[valid], reduction="sum")
        total += float(losses)
        count += int(valid.sum())
    return per_token(total, count, texts)


@torch.no_grad()
def text_losses(model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 16) -> list[float]:
    """Each text's summed next-token cross-entropy over its own tokens (the texts in the order
    text_loss reads them, the same for any model): the per-text values an interval of the
    text-loss ratio resamples."""
    device = next(model.parameters()).device
    losses = []
    for ids, mask in _text_batches(tokenizer, texts, max_length, batch_size, device):
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()  # (B, T-1, V)
        per_token = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
        losses += (per_token * mask[:, 1:]).sum(1).tolist()
    return losses


@torch.no_grad()
def text_kl(base_model, model, tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 16) -> float:
    """Mean per-token KL(base || model) of the next-token distributions (each model on its own device)."""
    device, base_device = next(model.parameters()).device, next(base_model.parameters()).device
    total, count = 0.0, 0
    for ids, mask in _text_batches(tokenizer, texts, max_length, batch_size, device):
        valid = mask.bool()
        p_log = base_model(input_ids=ids.to(base_device), attention_mask=mask.to(base_device),
                           use_cache=False).logits[valid.to(base_device)].float().log_softmax(-1).to(device)
        q_log = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[valid].float().log_softmax(-1)
        total += float(F.kl_div(q_log, p_log, log_target=True, reduction="sum"))
        count += int(valid.sum())
    return per_token(total, count, texts)


def per_token(total: float, count: int, texts: list[str]) -> float:
    """`total` over `count` scored tokens; none (every document shorter than 2 tokens, or no
    document) is an InputError naming the corpus where it is known."""
    from cir.data.text import where

    if not count:
        raise InputError("no text to score: every document is shorter than 2 tokens" if texts else "no text",
                         **where(texts))
    return total / count
