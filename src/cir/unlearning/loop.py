"""The one training loop every method shares: epochs, the disruption budget, rollback to the
last in-budget weights, metrics and seeds (cir.runs writes the run directory)."""

from __future__ import annotations

import functools
import math
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from cir import distributed
from cir.architecture import decoder_layers
from cir.training.batches import forget_batches, text_batches
from cir.data.mcq import MCQ
from cir.evaluation.budgets import Collateral, Disruption, resolve_collateral
from cir.methods import get_method
from cir.methods.base import NonFiniteLoss
from cir.models import in_float32, restore, snapshot
from cir.outputs import stage, to_json
from cir.evaluation.probes import cloze_and_recall, evaluate_battery
from cir.unlearning.run_config import RunConfig


# ---------------------------------------------------------------- the loop
@dataclass
class UnlearningResult:
    """What a run did: a row of measurements per epoch (0 = the original model), the epoch whose
    weights were kept and why it stopped."""

    metrics: list[dict]
    stop_reason: str
    kept_epoch: int  # the epoch whose weights were kept (0 = original)
    method_config: object  # resolved: the layers as they were used
    seconds: float
    original_loss: float  # held-out general text, before unlearning
    n_facts: int = 0
    # "probes": the forget facts in every held-out probe, before and after; "collateral": each
    # watched fact set before and on the kept weights, and the one that lost most
    extra: dict = field(default_factory=dict)
    stopped: str = ""  # why the run stopped and which weights it kept, in words (stop_reason, said for a reader)

    @property
    def kept(self) -> dict:
        """The measurements of the kept weights."""
        return self.metrics[self.kept_epoch]

    @property
    def seconds_per_fact(self) -> float:
        return self.seconds / max(self.n_facts, 1)


def gradient_checkpointing(model, on: bool) -> None:
    """Recompute each decoder layer's activations in backward instead of storing them.
    Transformers checkpoints only layers in training mode, so the layers are put in training
    mode with every dropout left off: the losses stay deterministic. (Transformers 5.2x names it
    activation checkpointing and will drop the old names in 6; earlier releases have only those.)"""
    if not on:
        if hasattr(model, "activation_checkpointing_disable"):
            model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_disable()
        model.eval()
        return
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer in decoder_layers(model):
        layer.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()


def _forget_schedule(tokenizer, items: list[MCQ], run: RunConfig, processes: int):
    """(forget batches, the batch indices of each epoch): with `phrasings`, every epoch draws its
    own phrasings of each fact (seeded by the run's seed and the epoch); else one set for all."""
    marks = {"first_token": run.answer_tokens == "first", "with_name": run.answer_tokens == "with_name"}
    if not run.context and (not run.phrasings or all(len(item.sentences()) <= run.phrasings for item in items)):
        return forget_batches(tokenizer, items, run.batch_size, run.max_length, min_size=processes, **marks), None
    batches, schedule = [], []
    for epoch in range(1, run.max_epochs + 1):
        drawn = forget_batches(tokenizer, items, run.batch_size, run.max_length, min_size=processes,
                               phrasings=run.phrasings, seed=run.seed * 10_007 + epoch, context=run.context, **marks)
        schedule.append(list(range(len(batches), len(batches) + len(drawn))))
        batches += drawn
    return batches, schedule


def run_unlearning(model, tokenizer, forget_items: list[MCQ], retain_texts: list[str], heldout_texts: list[str],
                   run: RunConfig, method_config, *, metrics_path: Path | None = None,
                   progress: bool = True, retain_sets: dict[str, list[MCQ]] | None = None,
                   protect_sets: dict[str, list[MCQ]] | None = None,
                   on_epoch: typing.Callable[[int, dict, dict], None] | None = None,
                   reference: dict | None = None) -> UnlearningResult:
    """Unlearn `forget_items` from `model` in place. Keeps the last weights whose disruption
    is within budget (and, with `retain_sets`, whose accuracy on those fact sets has not dropped
    more than the collateral budget); says which rule stopped the run. The fact sentences of
    `protect_sets` (default: the retain sets) are given to the method as facts to keep (CIR's
    retain-aware collapse reads them); sets apart from the watched ones let the collateral
    budget see what the method did to knowledge it was not shown.

    `on_epoch(epoch, row, parameters)` sees every epoch's row (epoch 0 included) and the trained
    parameters as they are then, before any rollback (cir.comparison keeps weights per budget).
    `reference`: measurements of `model` as given, already taken by the caller ("text_loss" on
    `heldout_texts`, "retain_accuracy" on `retain_sets`), used instead of measuring them again.

    Under a launcher every process runs this with the same inputs: each takes its shard of
    every batch, and the main process's measurements decide stopping for all of them."""
    torch.manual_seed(run.seed)
    start = time.perf_counter()
    run = resolve_collateral(run, retain_sets)
    method_cls = get_method(run.method)
    processes = distributed.world_size()
    forget, schedule = _forget_schedule(tokenizer, forget_items, run, processes)
    retain = text_batches(tokenizer, retain_texts, run.retain_batch_size, max_length=128, min_size=processes)
    device = next(model.parameters()).device
    forget, retain = ([b.rows(distributed.shard_rows(len(b))).to(device) for b in batches]
                      for batches in (forget, retain))
    if run.gradient_checkpointing:
        gradient_checkpointing(model, True)
    reference = reference or {}
    measuring = functools.partial(in_float32, model, run.measure_float32)  # with kl, the original kept as measured
    stage("reading the original model for the stop rule and the report: " + ", ".join(
        ["the held-out text's loss"] + ([f"{len(retain_sets)} watched fact set(s)"] if retain_sets else [])
        + ([f"the {len(forget_items)} forget facts in every held-out probe"] if run.eval_forget else [])), progress)
    with measuring():
        disruption = Disruption(model, tokenizer, heldout_texts, run.disruption, reference.get("text_loss"))
        collateral = Collateral(model, tokenizer, retain_sets, reference.get("retain_accuracy")) if retain_sets else None
    protect_sets = retain_sets if protect_sets is None else protect_sets
    retain_items = [item for items in (protect_sets or {}).values() for item in items]
    retain_facts = [b.rows(distributed.shard_rows(len(b))).to(device) for b in
                    forget_batches(tokenizer, retain_items, run.batch_size, run.max_length, min_size=processes,
                                   phrasings=run.phrasings, seed=run.seed)] if retain_items else []
    method = method_cls(model, tokenizer, method_config, forget, retain, retain_facts)
    method.schedule = schedule
    method.progress = progress and distributed.is_main()
    params = method.trained_parameters()
    kept = snapshot(params)
    metrics: list[dict] = []

    def record(epoch: int, forget_loss: float | None, t0: float) -> dict:
        """Measure the model after `epoch`; epoch 0 (the original weights: preparing changes none)
        reuses what was measured before: the text loss, the watched accuracies and the cloze probe."""
        with measuring():
            row = {"epoch": epoch, "forget_loss": forget_loss} | measure(epoch)
        row["in_budget"] = row["disruption"] <= run.budget and row.get("collateral", 0.0) <= run.collateral_budget
        row["seconds"] = round(time.perf_counter() - t0, 3)
        peaks = distributed.gather_values(distributed.peak_memory_mb())  # one per process
        row["peak_memory_mb"] = round(max(peaks), 1)
        if len(peaks) > 1:
            row["peak_memory_mb_per_process"] = [round(p, 1) for p in peaks]
        row = distributed.broadcast(row)  # every process stops and rolls back together
        metrics.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row, params)
        if metrics_path is not None:
            with open(metrics_path, "a") as f:
                f.write(to_json(row) + "\n")
        return row

    def measure(epoch: int) -> dict:
        row = disruption(model) if epoch else disruption.original_row()
        if run.eval_forget:  # cloze, and recall: each choice's first token (the same forward passes)
            if epoch:
                row["forget_accuracy"], recall = cloze_and_recall(model, tokenizer, forget_items)
            else:
                recall = probes_before.per_probe["recall"].accuracy if "recall" in probes_before.per_probe else None
                row["forget_accuracy"] = probes_before.per_probe["cloze"].accuracy
            if recall is not None:
                row["forget_recall"] = recall
        if collateral is not None:
            row |= collateral(model) if epoch else collateral.original_row()
        return row

    t0 = time.perf_counter()
    with measuring():
        probes_before = evaluate_battery(model, tokenizer, forget_items) if run.eval_forget else None
    stage(method.preparing, progress and bool(method.preparing))
    method.prepare()
    record(0, None, t0)
    stop_reason, kept_epoch, failure = f"max_epochs ({run.max_epochs})", 0, None
    stopped = f"ran all {run.max_epochs} epochs (max_epochs)" if run.max_epochs > 1 else "ran its one epoch (max_epochs)"
    bar = tqdm(range(1, run.max_epochs + 1), desc=f"unlearn [{run.method}]",
               disable=not progress or not distributed.is_main())
    for epoch in bar:
        t0 = time.perf_counter()
        try:
            forget_loss = method.run_epoch(epoch)["forget_loss"]
        except NonFiniteLoss as error:
            restore(params, kept)
            failure = f"had a non-finite loss ({error})"
            stop_reason = f"non-finite loss at epoch {epoch} ({error}); kept epoch {kept_epoch}"
            stopped = f"stopped at epoch {epoch}, whose loss was no longer finite ({error})"
            break
        row = record(epoch, forget_loss, t0)
        bar.set_postfix(forget_loss=f"{forget_loss:.4f}", disruption=f"{row['disruption']:.5f}",
                        acc=f"{row.get('forget_accuracy', float('nan')):.2f}",
                        recall=f"{row.get('forget_recall', float('nan')):.2f}")
        if not math.isfinite(row["disruption"]):
            restore(params, kept)
            failure = "had a non-finite disruption"
            stop_reason = f"non-finite disruption at epoch {epoch}; kept epoch {kept_epoch}"
            stopped = f"stopped at epoch {epoch}, whose held-out text {run.disruption} was no longer finite"
            break
        if not row["in_budget"]:
            restore(params, kept)
            passed = (f"{run.disruption} {row['disruption']:.5f} > {run.budget}" if row["disruption"] > run.budget
                      else f"collateral {row['collateral']:.3f} > {run.collateral_budget}")
            failure = f"passed the budget ({passed})"
            stop_reason = f"budget: {passed} at epoch {epoch}; rolled back to epoch {kept_epoch}"
            stopped = (f"stopped at epoch {epoch}, which passed the disruption budget: the held-out text's "
                       f"{run.disruption} {row['disruption']:.5f} > {run.budget}" if row["disruption"] > run.budget
                       else f"stopped at epoch {epoch}, which passed the collateral budget: the facts kept lost "
                            f"{row['collateral']:.3f} of their accuracy > {run.collateral_budget}")
            break
        kept, kept_epoch = snapshot(params), epoch
    bar.close()
    if run.gradient_checkpointing:
        gradient_checkpointing(model, False)
    extra = {} if kept_epoch else {"nothing_unlearned": True, "warning": nothing_unlearned(failure, method.config)}
    if collateral is not None:  # each watched set, before and on the kept weights
        extra["collateral"] = collateral.summary(metrics[kept_epoch]["retain_accuracy"]) | {
            "budget": run.collateral_budget}
    if probes_before is not None:  # the forget facts in every held-out probe, before and on the kept weights
        stage(f"measuring the kept weights (epoch {kept_epoch}): the forget facts in every held-out probe", progress)
        with measuring():
            after = evaluate_battery(model, tokenizer, forget_items)
        extra["probes"] = {"before": probes_before.to_json(), "after": after.to_json()}
    kept_words = (f"kept epoch {kept_epoch}" if kept_epoch == len(metrics) - 1 else f"rolled back to epoch {kept_epoch}"
                  if kept_epoch else "kept the original weights")
    return UnlearningResult(metrics=metrics, stop_reason=stop_reason, kept_epoch=kept_epoch, method_config=method.config,
                            seconds=time.perf_counter() - start, original_loss=disruption.original_loss,
                            n_facts=len(forget_items), extra=extra, stopped=f"{stopped}; {kept_words}")


def nothing_unlearned(failure: str, method_config) -> str:
    """What a run that kept the original weights says: why epoch 1 was not kept, and what to try."""
    return (f"nothing was unlearned: epoch 1 already {failure}, so the original weights were kept; "
            f"try a smaller step (unlearning_rate={method_config.unlearning_rate / 2:g})")
