"""Token batches for training: fact sentences (forget) and general text (retain)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from cir.data.mcq import MCQ


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T), 1 on real tokens
    token_mask: torch.Tensor  # (B, T) bool: real tokens that are not special tokens (BOS, padding)
    answer_mask: torch.Tensor  # (B, T) bool: tokens of the answer inside the sentence
    subject_mask: torch.Tensor | None = None  # (B, T) bool: tokens of the fact's subject, where it has one

    def _tensors(self) -> tuple:
        return self.input_ids, self.attention_mask, self.token_mask, self.answer_mask, self.subject_mask

    def inputs(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}

    def to(self, device) -> "Batch":
        return Batch(*(None if t is None else t.to(device) for t in self._tensors()))

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, index: slice) -> "Batch":
        """Some of the sentences (a process's shard), with the batch's padding kept."""
        return Batch(*(None if t is None else t[index] for t in self._tensors()))

    def n_tokens(self) -> int:
        """Real tokens: the terms of a loss averaged over tokens."""
        return int(self.token_mask.sum())


def _answer_span_mask(offsets: list[tuple[int, int]], text: str, answer: str | None,
                      first_token: bool = False) -> list[bool]:
    if answer:
        start = text.lower().rfind(answer.lower())
        if start >= 0:
            end = start + len(answer)
            marks = [s < end and e > start and e > s for s, e in offsets]
            if any(marks):
                if first_token:  # the token whose prediction recalls the fact
                    first = marks.index(True)
                    return [i == first for i in range(len(marks))]
                return marks
    return [e > s for s, e in offsets]  # no answer given or found: every real token


def _subject_mask(offsets: list[tuple[int, int]], text: str, subject: str | None) -> list[bool]:
    """The tokens that overlap any mention of `subject` in `text` (case-insensitive; "France's"
    marks the tokens of "France"); none without a subject."""
    spans, lowered = [], text.lower()
    if subject:
        start = lowered.find(subject.lower())
        while start >= 0:
            spans.append((start, start + len(subject)))
            start = lowered.find(subject.lower(), start + 1)
    return [e > s and any(s < end and e > begin for begin, end in spans) for s, e in offsets]


def encode(tokenizer, texts: list[str], answers: list[str | None] | None = None, max_length: int = 64,
           first_token: bool = False, subjects: list[str | None] | None = None) -> Batch:
    """Tokenise and pad right. Only special tokens and padding are masked out of `token_mask`:
    some tokenizers (SmolLM2's) add no BOS, so the first position can be a real word. With
    `first_token`, only the first token of each given answer is marked. With `subjects`, the
    tokens of each text's subject are marked in `subject_mask`."""
    answers = answers or [None] * len(texts)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True, return_offsets_mapping=True)
    attention = enc["attention_mask"]
    token_mask = attention.bool() & ~enc["special_tokens_mask"].bool()
    answer_mask = torch.zeros_like(token_mask)
    subject_mask = None if subjects is None else torch.zeros_like(token_mask)
    for row, (text, answer) in enumerate(zip(texts, answers)):
        offsets = [tuple(o) for o in enc["offset_mapping"][row].tolist()]
        answer_mask[row] = torch.tensor(_answer_span_mask(offsets, text, answer, first_token))
        if subject_mask is not None:
            subject_mask[row] = torch.tensor(_subject_mask(offsets, text, subjects[row]), dtype=torch.bool)
    answer_mask &= token_mask
    if subject_mask is not None:
        subject_mask &= token_mask
    return Batch(enc["input_ids"], attention, token_mask, answer_mask, subject_mask)


def chunks(n: int, batch_size: int, min_size: int = 1) -> list[slice]:
    """Consecutive slices of `batch_size` over n items; a last slice shorter than `min_size`
    joins the one before it (so every process gets at least one row of every batch)."""
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < min_size:
        del bounds[-2]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def draw_phrasings(items: list[MCQ], phrasings: int, seed: int) -> list[tuple[str, ...]]:
    """Per item, `phrasings` of its training sentences drawn with `seed` (all when it has no
    more than that, or `phrasings` is 0), in the bank's order."""
    rng = random.Random(seed)
    drawn = []
    for item in items:
        bank = item.sentences()
        if phrasings and len(bank) > phrasings:
            chosen = sorted(rng.sample(range(len(bank)), phrasings))
            bank = tuple(bank[i] for i in chosen)
        drawn.append(bank)
    return drawn


def with_context(texts: list[str], owners: list[int], banks: list[tuple[str, ...]], context: int,
                 seed: int) -> list[str]:
    """Each text preceded by `context` sentences of *other* facts (owner index != its own), one
    drawn (seeded) from each of `context` other banks, a line apart: a primed context like a
    k-shot prompt's, in the banks' own wordings."""
    rng = random.Random(seed)
    out = []
    for text, owner in zip(texts, owners):
        others = [i for i in range(len(banks)) if i != owner and banks[i]]
        chosen = rng.sample(others, min(context, len(others)))
        out.append("\n".join([rng.choice(banks[i]) for i in chosen] + [text]))
    return out


def forget_batches(tokenizer, items: list[MCQ], batch_size: int = 32, max_length: int = 64,
                   min_size: int = 1, phrasings: int = 0, seed: int = 0, context: int = 0,
                   first_token: bool = False, with_name: bool = False) -> list[Batch]:
    """The fact sentences of every item (all, or `phrasings` each drawn with `seed`), in file
    order, with their answer tokens marked. With `context`, each is preceded by that many
    sentences of other facts (see `with_context`); only its own answer is marked, and
    `max_length` grows with the context so that the fact itself is never cut. With
    `first_token`, only the first token of each answer is marked (see `encode`). With
    `with_name`, the tokens that continue each mention of the fact's subject are marked as well
    (`name_continuations`): a loss on the marked tokens then reads what completes the name too."""
    drawn = [(owner, sentence) for owner, bank in enumerate(draw_phrasings(items, phrasings, seed))
             for sentence in bank]
    owners = [owner for owner, _ in drawn]
    texts = [sentence for _, sentence in drawn]
    answers = [items[owner].answer_text for owner in owners]
    subjects = [items[owner].subject for owner in owners]
    if context:
        texts = with_context(texts, owners, [item.sentences() for item in items], context, seed)
        max_length *= context + 1
    batches = [encode(tokenizer, texts[c], answers[c], max_length, first_token, subjects[c])
               for c in chunks(len(texts), batch_size, min_size)]
    if with_name:
        for batch in batches:
            batch.answer_mask |= name_continuations(batch.subject_mask)
    return batches


def name_continuations(subject_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the subject's tokens that follow another of its tokens (a name's second and
    later tokens: what a model that learnt the name predicts from its first)."""
    marks = torch.zeros_like(subject_mask)
    marks[:, 1:] = subject_mask[:, 1:] & subject_mask[:, :-1]
    return marks


def text_batches(tokenizer, texts: list[str], batch_size: int = 16, max_length: int = 128,
                 min_size: int = 1) -> list[Batch]:
    return [encode(tokenizer, texts[c], max_length=max_length) for c in chunks(len(texts), batch_size, min_size)]
