"""The relearning attack: fine-tune on some forget facts (T), watch the others (V) come back.

If unlearning only hid the facts (e.g. by changing the output), training on *other* facts of
the same kind restores them; robust unlearning keeps V near chance.
"""

from __future__ import annotations

import random

import torch

from cir.architecture import decoder_layers, is_transposed, mlp_projections
from cir.data import given
from cir.data.mcq import MCQ
from cir.errors import InputError
from cir.probes import probe_mcq
from cir.evaluation import evaluate_mcq
from cir.finetune import check_schedule, finetune


def split_forget(items: list[MCQ], ratio: float = 0.5, seed: int = 0, model=None, tokenizer=None,
                 drop_wrong: bool = False) -> tuple[list[MCQ], list[MCQ]]:
    """(T, V): a seeded `ratio` of the questions to attack with, the rest to evaluate. Questions
    with the same `subject` go to the same side (no subject is in both); a question without one
    is a subject of its own. Subjects are drawn in a seeded order until T holds its share.

    With `drop_wrong`, questions `model` (the base model) answers wrongly are dropped first:
    they cannot be "restored"."""
    if not 0 < ratio < 1:
        raise InputError(f"the T/V ratio must be between 0 and 1, got {ratio}")
    if drop_wrong:
        if model is None:
            raise ValueError("drop_wrong needs the base model and tokenizer")
        correct = evaluate_mcq(model, tokenizer, items).correct
        items = [item for item, ok in zip(items, correct) if ok]
    groups = subject_groups(items)
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_train, train = round(len(items) * ratio), []
    for group in order:
        if len(train) >= n_train:
            break
        train += groups[group]
    if not train or len(train) == len(items):
        raise InputError(f"cannot split {len(items)} questions ({len(groups)} subjects) into non-empty T and V "
                         f"at ratio {ratio}")
    chosen = set(train)
    return [items[i] for i in sorted(chosen)], [items[i] for i in range(len(items)) if i not in chosen]


def subject_groups(items: list[MCQ]) -> list[list[int]]:
    """Indices of `items` grouped by subject (case-insensitive), in order of first appearance;
    an item without a subject is a group of its own."""
    groups: dict = {}
    for i, item in enumerate(items):
        key = item.subject.strip().casefold() if item.subject else ("item", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _lora_parameters(model, rank: int):
    """Wrap the MLP projections with LoRA adapters (in place); returns (peft model, adapter parameters)."""
    from peft import LoraConfig, get_peft_model

    modules = mlp_projections(model, range(len(decoder_layers(model))))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(modules),
                        fan_in_fan_out=any(is_transposed(m) for m in modules.values()))
    wrapped = get_peft_model(model, config)
    return wrapped, [p for n, p in wrapped.named_parameters() if "lora_" in n]


def relearn(model, tokenizer, train_items: list[MCQ], eval_items: list[MCQ], epochs: int = 5, lr: float = 1e-4,
            optimizer: str = "adam", params: str = "mlp", *, batch_size: int = 16, seed: int = 0,
            fmt: str = "cloze", shots: int = 3, lora_rank: int = 8, texts: list[str] | None = None,
            progress: bool = False) -> dict:
    """Fine-tune `model` in place on the fact sentences of `train_items` (or on `texts`: other
    text, such as general text, with `train_items` empty); accuracy on `eval_items` (scored with
    the probe format `fmt`) before and after every epoch. LoRA adapters are merged into the
    weights at the end."""
    if params not in ("mlp", "all", "lora"):
        raise InputError(f"unknown parameter set '{params}' (mlp, all, lora)")
    if optimizer not in ("adam", "sgd"):
        raise InputError(f"unknown optimizer '{optimizer}' (adam, sgd)")
    check_schedule(epochs, lr)
    train_items = given.questions(train_items, "train_items") if train_items or texts is None else []
    eval_items = given.questions(eval_items, "eval_items")

    def accuracy() -> float:
        return probe_mcq(model, tokenizer, eval_items, fmt, k=shots, seed=seed).accuracy

    before, per_epoch = accuracy(), []

    def on_epoch(epoch: int, loss: float) -> None:
        per_epoch.append(accuracy())

    trained, trainable = model, params
    if params == "lora":
        torch.manual_seed(seed)  # the adapters' initialisation
        trained, trainable = _lora_parameters(model, lora_rank)
    sentences = [s for item in train_items for s in item.sentences()] + list(texts or ())
    if not sentences:
        raise InputError("the relearning attack has nothing to train on (no train_items, no texts)")
    losses = finetune(trained, tokenizer, sentences, epochs=epochs, lr=lr, optimizer=optimizer, params=trainable,
                      batch_size=batch_size, seed=seed, on_epoch=on_epoch, progress=progress)
    if params == "lora":
        trained.merge_and_unload()
    return {"attack": "relearn", "before": before, "per_epoch": per_epoch, "max_accuracy": max(per_epoch),
            "losses": losses, "epochs": epochs, "lr": lr, "optimizer": optimizer, "params": params,
            "n_train": len(train_items), "n_texts": len(texts or ()), "n_eval": len(eval_items), "format": fmt}
