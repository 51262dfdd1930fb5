"""Membership inference on sentences: are forget facts still more likely than unseen ones?

Scores (higher = "more likely a member"):
loss:  -mean token NLL
zlib:  -(mean token NLL) / zlib-compressed length of the text in bytes
min_k: mean of the lowest k% token log-probabilities (Min-K%, Shi et al. 2024)
AUC of members vs non-members: 0.5 = indistinguishable, 1 = every member scores higher.

PrivLeak against the retain model, for the same members and non-members, in two readings
(cir.evaluation.statistics holds both formulas and their intervals):
- the signed reading (`privleak`): (AUC on the unlearned model - AUC on the retain model) / AUC on
  the retain model: 0 = as private as a model that never saw the members; positive = the members
  still stand out, negative = they stand out the other way (unlearned too far, which also tells
  them apart);
- MUSE's (`privleak_muse`, Shi et al. 2024): the same change of MUSE's AUC, 1 - the usual one, in
  percent: a model that still remembers scores negative (down to -100), an over-unlearned one
  positive. The signed reading's +0.767 (AUC 0.849 against the retain model's 0.480) is -71 here.
"""

from __future__ import annotations

import math
import os
import zlib

import torch

from cir.data.text import where
from cir.errors import InputError
from cir.evaluation import statistics
from cir.evaluation.scoring import pad

METRICS = ("loss", "zlib", "min_k")


@torch.no_grad()
def token_logprobs(model, tokenizer, texts: list[str], max_length: int = 64,
                   batch_size: int = 16) -> list[torch.Tensor]:
    """log P(token | prefix) of every token after the first, one tensor per text."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        seqs = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in chunk]
        ids, mask = pad(seqs, tokenizer.pad_token_id, device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        lp = logits.log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]
        out += [lp[row, : len(seq) - 1].cpu() for row, seq in enumerate(seqs)]
    return out


def mia_scores(model, tokenizer, texts: list[str], k: float = 0.2) -> dict[str, list[float]]:
    scores = {m: [] for m in METRICS}
    for index, (text, lp) in enumerate(zip(texts, token_logprobs(model, tokenizer, texts))):
        if lp.numel() == 0:
            raise InputError(f"text too short to score: {text!r} (a score needs at least 2 tokens)",
                             **where(texts, index))
        loss = -float(lp.mean())
        scores["loss"].append(-loss)
        scores["zlib"].append(-loss / len(zlib.compress(text.encode("utf-8"))))
        lowest = lp.sort().values[: max(1, math.ceil(k * lp.numel()))]
        scores["min_k"].append(float(lowest.mean()))
    return scores


def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def auc(positives: list[float], negatives: list[float]) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties counting half (Mann-Whitney U)."""
    if not positives or not negatives:
        raise ValueError("AUC needs at least one positive and one negative")
    ranks = _ranks(list(positives) + list(negatives))
    n_pos = len(positives)
    u = sum(ranks[:n_pos]) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * len(negatives))


def mia(model, tokenizer, members: list[str], nonmembers: list[str], k: float = 0.2,
        scores: bool = False) -> dict:
    """Membership inference: the AUC of each score, members vs non-members (sentences the model
    may have seen vs held-out ones of the same kind), and their mean scores. Each is a list of
    sentences or a spec (as `load_sentences` reads it). `scores`: also every sentence's scores
    ({"members": {metric: [...]}, "nonmembers": ...}), which PrivLeak's interval resamples."""
    members, nonmembers = _sentences(members, "members"), _sentences(nonmembers, "nonmembers")
    pos, neg = mia_scores(model, tokenizer, members, k), mia_scores(model, tokenizer, nonmembers, k)
    return {"auc": {m: auc(pos[m], neg[m]) for m in METRICS},
            "members": {m: sum(pos[m]) / len(pos[m]) for m in METRICS},
            "nonmembers": {m: sum(neg[m]) / len(neg[m]) for m in METRICS},
            "n_members": len(members), "n_nonmembers": len(nonmembers), "min_k": k} | (
        {"scores": {"members": pos, "nonmembers": neg}} if scores else {})


def privleak(unlearned: dict, retain: dict) -> dict[str, float]:
    """PrivLeak's signed reading of each score, from two `mia` results on the same sentences."""
    return {m: statistics.privleak_signed(unlearned["auc"][m], retain["auc"][m]) for m in METRICS}


def privleak_muse(unlearned: dict, retain: dict) -> dict[str, float]:
    """PrivLeak as MUSE reports it (percent; remembering < 0 < over-unlearned) of each score, from
    two `mia` results on the same sentences."""
    return {m: statistics.privleak_muse(unlearned["auc"][m], retain["auc"][m]) for m in METRICS}


def privleak_intervals(unlearned: dict, retain: dict, convention: str = "muse", n_resamples: int = statistics.N_RESAMPLES,
                       seed: int = 0) -> dict[str, statistics.Interval]:
    """PrivLeak of each score with its interval (members and non-members resampled), from two
    `mia(..., scores=True)` results on the same sentences; `convention`: "muse" or "signed"."""
    for name, result in (("unlearned", unlearned), ("retain", retain)):
        if "scores" not in result:
            raise ValueError(f"the {name} model's mia result has no per-sentence scores: run mia(..., scores=True)")
    return {m: statistics.privleak_interval(unlearned["scores"]["members"][m], unlearned["scores"]["nonmembers"][m],
                                            retain["scores"]["members"][m], retain["scores"]["nonmembers"][m],
                                            convention, n_resamples, seed) for m in METRICS}


def _sentences(value, name: str) -> list[str]:
    from cir.data import given

    return load_sentences(value) if given.is_spec(value) else given.texts(value, name)


def load_sentences(spec: str | os.PathLike) -> list[str]:
    """Sentences to score: a text corpus (.txt, JSONL with `text`) or a fact set's fact sentences."""
    from cir.data import load_mcq, load_texts
    from cir.data._io import read_jsonl
    from cir.data.text import Texts

    spec = os.fspath(spec)
    if spec.endswith(".txt"):
        return load_texts(spec)
    if spec.endswith(".jsonl") and "question" not in read_jsonl(spec)[0][1]:
        return load_texts(spec)
    return Texts([s for item in load_mcq(spec) for s in item.sentences()], spec)
