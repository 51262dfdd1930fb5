"""The Python API (`import cir`): unlearn, evaluate, compare, as the command line does.

Every function takes a loaded `(model, tokenizer)` (cir.load_model) and fact sets as lists of
questions (cir.load_facts) or as specs. Options are typed: the method's config dataclass
(`config=`), the loop's RunConfig (`loop=`), or single options by name (`max_epochs=2`,
`act_components=8`), which override both. The attacks are in cir.attacks. Every bad option or
argument raises a cir.InputError (one of the wrong type is also a TypeError, one out of range
also a ValueError), the error the command line prints as one line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from cir import distributed
from cir.comparison import CompareSettings, Comparison, Evaluation, Journal, journal_header
from cir.data import MCQ, given, topic_sets
from cir.errors import OptionTypeError
from cir.outputs import stage
from cir.evaluation.scoring import evaluate_mcq, text_kl, text_loss
from cir.unlearning.loop import UnlearningResult, run_unlearning
from cir.data.general import general_text_split
from cir.evaluation.budgets import resolve_collateral
from cir.evaluation.probes import evaluate_battery
from cir.evaluation.protocol import PROTECTED, REPORTED, WATCHED, watched_retain_sets
from cir.unlearning.run_config import RunConfig, make_configs
from cir.runs import run_directory, save_weights, write_run

Facts = Sequence[MCQ] | str | Path | Sequence[str | Path]  # questions, or fact set specs (a file, a topic, hf:...)
Texts = Sequence[str] | str | Path  # documents, or a corpus spec (a .txt or JSONL file, hf:...)


def _specs(facts: Facts) -> list[str]:
    """The specs `facts` were given as ([] for questions): run directories name them."""
    return [str(facts)] if given.is_spec(facts) else [str(f) for f in facts if given.is_spec(f)]


def evaluate(model, tokenizer, mcq=None, text=None, *, probes: bool = False, fmt: str = "cloze", base=None) -> dict:
    """What `model` knows: accuracy on each fact set of `mcq` ({name: questions or spec}, or one set)
    under the prompt format `fmt` (cloze, letters, answer_only), with `probes` also in every
    held-out probe and the worst; loss on each corpus of `text` ({name: texts or spec}, or one).
    With `base` (a reference model: the model before unlearning), each fact set's "base" reading
    beside the model's (accuracy, P(correct), and `lost`: the questions the model answers fewer)
    and KL(base || model) on each corpus. The same object as `cir eval --json`."""
    result = {"format": fmt, "mcq": {}, "text": {}}
    for name, items in given.named(mcq, "mcq", given.questions).items():
        start = time.perf_counter()
        scored = evaluate_mcq(model, tokenizer, items, fmt)
        entry = scored.to_json() | {"seconds": round(time.perf_counter() - start, 2)}
        if base is not None:
            before = evaluate_mcq(base, tokenizer, items, fmt)
            entry["base"] = before.to_json() | {"lost": sum(before.correct) - sum(scored.correct)}
        if probes:
            entry["probes"] = evaluate_battery(model, tokenizer, items).to_json()
        result["mcq"][name] = entry
    for name, texts in given.named(text, "text", given.texts).items():
        entry = {"loss": text_loss(model, tokenizer, texts), "n": len(texts)}
        if base is not None:
            entry["base_loss"] = text_loss(base, tokenizer, texts)
            entry["kl"] = text_kl(base, model, tokenizer, texts)
        result["text"][name] = entry
    return result


def unlearn(model, tokenizer, forget: Facts, *, method: str | None = None, retain: Texts | None = None,
            heldout: Texts | None = None, watch: dict[str, Facts] | None = None,
            protect: dict[str, Facts] | None = None, config=None,
            loop: RunConfig | None = None, progress: bool = True, **options) -> UnlearningResult:
    """Make `model` forget the facts `forget`, **in place** (copy.deepcopy it first to keep the
    original): epochs of `method` (default cir) until a budget is passed, then back to the last
    weights within both budgets.

    retain:  general text for the retain step; heldout: general text the disruption budget is
             measured on (each by default half of the text sampled from the model itself)
    watch:   fact sets to keep ({name: questions}), whose even-numbered questions the collateral
             budget watches (default: the built-in topics that ask none of the forget questions;
             {}: none); questions sharing an answer with a forget fact are left out
    protect: fact sets given to the method to keep (CIR's retain-aware collapse reads them), all
             their questions (default: the watched questions; {}: none). Sets apart from the
             watched ones let the collateral budget see what the method did to facts it was not shown
    config:  the method's config dataclass (e.g. CIRConfig); loop: a RunConfig
    options: single options by name, a loop option or the method's (`max_epochs=2`)
    """
    run, method_config = make_configs(method, config, options, loop=loop)
    forget = given.questions(forget, "forget")
    watched, protected = _watched(forget, watch), _protected(forget, protect)
    retain, heldout = _general_text(model, tokenizer, retain, heldout)
    return _warned(run_unlearning(model, tokenizer, forget, retain, heldout, run, method_config, progress=progress,
                                  retain_sets=watched, protect_sets=protected))


def unlearn_to_dir(model, tokenizer, forget: Facts, out: str | Path, *, overwrite: bool = False,
                   method: str | None = None, retain: Texts | None = None, heldout: Texts | None = None,
                   watch: dict[str, Facts] | None = None, protect: dict[str, Facts] | None = None, config=None,
                   loop: RunConfig | None = None, progress: bool = True, shard: bool = False, sources: dict | None = None,
                   **options) -> UnlearningResult:
    """`unlearn`, writing the run directory `out`: the unlearned model (loadable by
    transformers), config.yaml (every option, resolved; `sources` adds to what it records),
    metrics.jsonl, result.json and report.md. `out` appears whole or not at all; a non-empty
    one is refused without `overwrite`. Under a launcher every process calls it (with `shard`,
    the weights are sharded with FSDP after the general text is sampled) and the main process
    writes."""
    run, method_config = make_configs(method, config, options, loop=loop)
    overwrite = _flag(overwrite, "overwrite")
    questions = given.questions(forget, "forget")
    watched, protected = _watched(questions, watch), _protected(questions, protect)
    run = resolve_collateral(run, watched)  # config.yaml records the figure
    with distributed.main_first():  # the main process samples (and caches) the general text
        retain_texts, heldout_texts = _general_text(model, tokenizer, retain, heldout)
    if shard:
        distributed.shard_model(model)
    sources = {"forget": _specs(forget), "retain": "given" if retain else "sampled from the model",
               "retain_mcq": {name: len(items) for name, items in watched.items()},
               **({} if protected is None else {"protect_mcq": {name: len(items) for name, items in protected.items()}}),
               "processes": distributed.world_size()} | (sources or {})
    with run_directory(out, overwrite) as staging:
        result = run_unlearning(model, tokenizer, questions, retain_texts, heldout_texts, run, method_config,
                                metrics_path=None if staging is None else staging / "metrics.jsonl",
                                progress=progress, retain_sets=watched, protect_sets=protected)
        stage(f"writing the unlearned model and its report to {out}", progress)
        save_weights(model, tokenizer, staging)
        if staging is not None:
            write_run(staging, result, run, sources)
    return _warned(result)


def compare(model, tokenizer, forget: Facts | None = None, *, benchmark: str | None = None,
            benchmark_options: dict | None = None, settings: CompareSettings | None = None,
            topics: dict[str, Facts] | None = None, retain: Texts | None = None,
            heldout: Texts | None = None, progress: bool = True, journal: str | Path | None = None) -> dict:
    """Compare methods on `forget`, or on a named benchmark's forget set (cir.benchmarks:
    capitals, subjects, taught; `benchmark_options` go to its maker), at every budget of
    `settings`, each tuned (optuna) to forget what survives the relearning attack, judged on seeds
    that did not tune it (cir.comparison). `topics`: other knowledge, a quarter watched by the
    collateral budget, a quarter given to the methods to keep and half reported, each apart
    (default: the benchmark's, or the built-in topics that
    ask none of the forget questions). A benchmark with a never-taught model also reports each
    attack's residual over it. `journal`: a file that records every finished run; given again,
    the comparison continues from it. `model` ends with its original weights. The same object as
    compare.json."""
    settings = CompareSettings() if settings is None else settings
    if not isinstance(settings, CompareSettings):
        raise OptionTypeError(f"settings must be a CompareSettings (e.g. CompareSettings(trials=1)), got "
                        f"{type(settings).__name__}")
    never_taught = None
    if benchmark is not None:
        from cir.benchmarks import make_setting

        setting = make_setting(benchmark, model, tokenizer, progress=progress, **(benchmark_options or {}))
        model, never_taught = setting.model, setting.reference
        forget = setting.forget if forget is None else forget
        topics = setting.topics if topics is None else topics
        if setting.general is not None:  # where the benchmark's general text is not the model's samples
            retain, heldout = retain or setting.general[0], heldout or setting.general[1]
    if forget is None:
        raise OptionTypeError("compare needs the facts to forget (forget=) or a benchmark (benchmark=)")
    questions = settings.forget_questions(given.questions(forget, "forget"))
    topics = topic_sets(excluding=questions) if topics is None else given.named(topics, "topics", given.questions)
    retain, heldout = _general_text(model, tokenizer, retain, heldout)
    topics = {name: items[: settings.topic_questions] for name, items in topics.items()}
    evaluation = Evaluation(questions, watched_retain_sets(questions, topics, WATCHED),
                            watched_retain_sets(questions, topics, REPORTED), retain, heldout,
                            watched_retain_sets(questions, topics, PROTECTED))
    settings = settings.for_watched(evaluation.watched)
    if journal is not None:
        journal = Journal(Path(journal), journal_header(model, settings, evaluation, benchmark))
    result = Comparison(model, tokenizer, evaluation, settings, progress, journal, never_taught).run()
    return result | ({"benchmark": benchmark} if benchmark else {})


def _warned(result: UnlearningResult) -> UnlearningResult:
    """`result`, its warning (a run that kept the original weights) printed on one line first."""
    if "warning" in result.extra and distributed.is_main():
        print(f"warning: {result.extra['warning']}", file=sys.stderr)
    return result


def _general_text(model, tokenizer, retain: Texts | None, heldout: Texts | None):
    """(retain, held-out) general text: each given one, else its half of the model's samples."""
    retain, heldout = given.optional_texts(retain, "retain"), given.optional_texts(heldout, "heldout")
    if retain and heldout:
        return retain, heldout
    sampled_retain, sampled_heldout = general_text_split(model, tokenizer)
    return retain or sampled_retain, heldout or sampled_heldout


def _kept_sets(forget: list[MCQ], sets: dict[str, Facts], name: str, half: int | None) -> dict[str, list[MCQ]]:
    """The fact sets of the argument `name`, their questions `half` (as watched_retain_sets)."""
    if not isinstance(sets, Mapping):
        raise OptionTypeError(f"{name} must be a dict of fact sets ({{name: questions or spec}}), got {type(sets).__name__}")
    return watched_retain_sets(forget, given.named(sets, name, given.questions), half=half)


def _protected(forget: list[MCQ], protect: dict[str, Facts] | None) -> dict[str, list[MCQ]] | None:
    """The facts given to the method to keep: every question of `protect` that asks no forget
    question nor states a forget fact again; None (the watched ones) where none are given."""
    return None if protect is None else _kept_sets(forget, protect, "protect", None)


def _watched(forget: list[MCQ], watch: dict[str, Facts] | None) -> dict[str, list[MCQ]]:
    if watch is None:
        return watched_retain_sets(forget, topic_sets(excluding=forget), half=0)
    return _kept_sets(forget, watch, "watch", 0)


def _flag(value, name: str) -> bool:
    """A true-or-false argument: anything else (a string "no" is true) is an OptionTypeError."""
    if not isinstance(value, bool):
        raise OptionTypeError(f"{name} must be True or False, got {value!r}")
    return value
