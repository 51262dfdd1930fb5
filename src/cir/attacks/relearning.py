"""The relearning attack: fine-tune on some forget facts (T), watch the others (V) come back.

If unlearning only hid the facts (e.g. by changing the output), training on *other* facts of
the same kind restores them; robust unlearning keeps V near chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


from cir.architecture import decoder_layers, is_transposed, mlp_projections
from cir.attacks.base import Attack, AttackInputs, AttackOutcome, register_attack
from cir.data import given
from cir.data.mcq import MCQ
from cir.errors import InputError, OptionError
from cir.evaluation.probes import probe_mcq
from cir.evaluation.splits import check_apart
from cir.training.finetune import check_schedule, finetune


def _lora_parameters(model, rank: int):
    """Wrap the MLP projections with LoRA adapters (in place); returns (peft model, adapter parameters)."""
    from peft import LoraConfig, get_peft_model

    modules = mlp_projections(model, range(len(decoder_layers(model))))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(modules),
                        fan_in_fan_out=any(is_transposed(m) for m in modules.values()))
    wrapped = get_peft_model(model, config)
    return wrapped, [p for n, p in wrapped.named_parameters() if "lora_" in n]


def _relearn(model, tokenizer, train_items: list[MCQ], eval_items: list[MCQ], epochs: int = 5, lr: float = 1e-4,
            optimizer: str = "adam", params: str = "mlp", *, batch_size: int = 16, seed: int = 0,
            fmt: str = "cloze", shots: int = 3, lora_rank: int = 8, texts: list[str] | None = None,
            progress: bool = False) -> tuple[object, dict]:
    """Fine-tune `model` in place on the fact sentences of `train_items` (or on `texts`: other
    text, such as general text, with `train_items` empty); accuracy on `eval_items` (scored with
    the probe format `fmt`) before and after every epoch. LoRA adapters are merged into the
    weights at the end. Returns (V's reading at the best epoch, the attack's record)."""
    if params not in ("mlp", "all", "lora"):
        raise InputError(f"unknown parameter set '{params}' (mlp, all, lora)")
    if optimizer not in ("adam", "sgd"):
        raise InputError(f"unknown optimizer '{optimizer}' (adam, sgd)")
    check_schedule(epochs, lr)
    train_items = given.questions(train_items, "train_items") if train_items or texts is None else []
    eval_items = given.questions(eval_items, "eval_items")

    def reading():
        return probe_mcq(model, tokenizer, eval_items, fmt, k=shots, seed=seed)

    before, per_epoch, best = reading().accuracy, [], []

    def on_epoch(epoch: int, loss: float) -> None:
        now = reading()
        per_epoch.append(now.accuracy)
        if not best or now.accuracy > best[0].accuracy:  # the first of the best epochs
            best[:] = [now]

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
    return best[0], {"attack": "relearn", "before": before, "per_epoch": per_epoch, "max_accuracy": max(per_epoch),
            "losses": losses, "epochs": epochs, "lr": lr, "optimizer": optimizer, "params": params,
            "n_train": len(train_items), "n_texts": len(texts or ()), "n_eval": len(eval_items), "format": fmt}


def relearn(model, tokenizer, train_items: list[MCQ], eval_items: list[MCQ], epochs: int = 5, lr: float = 1e-4,
            optimizer: str = "adam", params: str = "mlp", **options) -> dict:
    """Fine-tune `model` in place on the fact sentences of `train_items` (or on `texts`: other
    text, such as general text, with `train_items` empty); accuracy on `eval_items` (scored with
    the probe format `fmt`) before and after every epoch ("per_epoch", the best "max_accuracy").
    LoRA adapters are merged into the weights at the end. `options`: batch_size, seed, fmt,
    shots, lora_rank, texts, progress. A `train_items` that shares a question or a subject with
    `eval_items` is refused (InputError); training that breaks the model raises DivergedError."""
    train_items = given.questions(train_items, "train_items") if train_items or options.get("texts") is None else []
    eval_items = given.questions(eval_items, "eval_items")
    check_apart(train_items, eval_items, ("train_items", "eval_items"))
    return _relearn(model, tokenizer, train_items, eval_items, epochs, lr, optimizer, params, **options)[1]


RELEARN_DATA = {"T": "T", "general": "general text", "kept": "kept facts"}
PARAMS = {"mlp": "MLP", "all": "all weights", "lora": "LoRA r8"}


@register_attack("relearn")
@dataclass(frozen=True)
class Relearning(Attack):
    """Relearning: Adam at `lr` for `epochs` on `data` (T's fact sentences, general text, or kept
    facts as many as T), training `params` (the MLPs, all weights, LoRA r8 adapters); V is read
    every epoch and the best epoch counts."""

    data: str = "T"
    params: str = "mlp"
    lr: float = 3e-5
    epochs: int = 6

    def __post_init__(self):
        if self.data not in RELEARN_DATA or self.params not in PARAMS:
            raise OptionError(f"unknown relearning data '{self.data}' or parameters '{self.params}' "
                             f"(data: {', '.join(RELEARN_DATA)}; parameters: {', '.join(PARAMS)})")
        check_schedule(self.epochs, self.lr)

    @property
    def label(self) -> str:
        return f"relearning on {RELEARN_DATA[self.data]} ({PARAMS[self.params]}, lr {self.lr:g}, {self.epochs} epochs)"

    @property
    def key(self) -> str:
        return f"relearn:{self.data}:{self.params}:{self.lr:g}:{self.epochs}"

    def apply(self, model, tokenizer, inputs: AttackInputs) -> AttackOutcome:
        texts = inputs.texts.get(self.data) or []
        if not texts:
            raise InputError(f"the attack '{self.label}' has no {RELEARN_DATA[self.data]} to train on")
        items, extra = (texts, None) if self.data != "general" else ([], texts)
        if self.data == "T":
            check_apart(items, inputs.held_out)
        best, record = _relearn(model, tokenizer, items, inputs.held_out, epochs=self.epochs, lr=self.lr,
                                optimizer="adam", params=self.params, seed=inputs.seed, texts=extra,
                                progress=inputs.progress)
        return AttackOutcome(best=best, record=record)
