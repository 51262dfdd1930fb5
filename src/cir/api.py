"""The Python API (`import cir`): unlearn, evaluate, compare, as the command line does.

Every function takes a loaded `(model, tokenizer)` (cir.load_model) and fact sets as lists of
questions (cir.load_facts) or as specs. Options are typed: the method's config dataclass
(`config=`), the loop's RunConfig (`loop=`), or single options by name (`max_epochs=2`,
`act_components=8`), which override both. The attacks are in cir.attacks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cir import distributed
from cir.attacks.probes import evaluate_battery
from cir.comparison import CompareSettings, Comparison, Evaluation, Journal, journal_header
from cir.data import MCQ, load_facts, topic_sets
from cir.evaluation import evaluate_mcq, named_sets, text_kl, text_loss
from cir.runs import run_directory, save_weights, write_run
from cir.loop import RunConfig, UnlearningResult, general_text_split, make_configs, run_unlearning, \
    watched_retain_sets

Facts = Sequence[MCQ] | str | Sequence[str]  # questions, or fact set specs (a file, a topic, hf:...)


def _questions(facts: Facts) -> list[MCQ]:
    return load_facts(facts) if isinstance(facts, str) or all(isinstance(f, str) for f in facts) else list(facts)


def _specs(facts: Facts) -> list[str]:
    """The specs `facts` were given as ([] for questions): run directories name them."""
    return [facts] if isinstance(facts, str) else [f for f in facts if isinstance(f, str)]


def evaluate(model, tokenizer, mcq=None, text=None, *, probes: bool = False, fmt: str = "cloze", base=None) -> dict:
    """What `model` knows: accuracy on each fact set of `mcq` ({name: questions}, or one list)
    under the prompt format `fmt` (cloze, letters, answer_only), with `probes` also in every
    held-out probe and the worst; loss on each corpus of `text` ({name: texts}, or one list),
    and with `base` (a reference model) KL(base || model). The same object as `cir eval --json`."""
    result = {"format": fmt, "mcq": {}, "text": {}}
    for name, items in named_sets(mcq, "mcq").items():
        start = time.perf_counter()
        entry = evaluate_mcq(model, tokenizer, items, fmt).to_json() | {"seconds": round(time.perf_counter() - start, 2)}
        if probes:
            entry["probes"] = evaluate_battery(model, tokenizer, items).to_json()
        result["mcq"][name] = entry
    for name, texts in named_sets(text, "text").items():
        entry = {"loss": text_loss(model, tokenizer, texts), "n": len(texts)}
        if base is not None:
            entry["base_loss"] = text_loss(base, tokenizer, texts)
            entry["kl"] = text_kl(base, model, tokenizer, texts)
        result["text"][name] = entry
    return result


def unlearn(model, tokenizer, forget: Facts, *, method: str | None = None, retain: list[str] | None = None,
            heldout: list[str] | None = None, watch: dict[str, list[MCQ]] | None = None, config=None,
            loop: RunConfig | None = None, progress: bool = True, **options) -> UnlearningResult:
    """Make `model` forget the facts `forget`, **in place** (copy.deepcopy it first to keep the
    original): epochs of `method` (default cir) until a budget is passed, then back to the last
    weights within both budgets.

    retain:  general text for the retain step; heldout: general text the disruption budget is
             measured on (each by default half of the text sampled from the model itself)
    watch:   fact sets to keep ({name: questions}), whose even-numbered questions the collateral
             budget watches (default: the built-in topics that ask none of the forget questions;
             {}: none); questions sharing an answer with a forget fact are left out
    config:  the method's config dataclass (e.g. CIRConfig); loop: a RunConfig
    options: single options by name, a loop option or the method's (`max_epochs=2`)
    """
    run, method_config = make_configs(method, config, options, loop=loop)
    forget = _questions(forget)
    retain, heldout = _general_text(model, tokenizer, retain, heldout)
    return _warned(run_unlearning(model, tokenizer, forget, retain, heldout, run, method_config, progress=progress,
                                  retain_sets=_watched(forget, watch)))


def unlearn_to_dir(model, tokenizer, forget: Facts, out: str | Path, *, overwrite: bool = False,
                   method: str | None = None, retain: list[str] | None = None, heldout: list[str] | None = None,
                   watch: dict[str, list[MCQ]] | None = None, config=None, loop: RunConfig | None = None,
                   progress: bool = True, shard: bool = False, sources: dict | None = None,
                   **options) -> UnlearningResult:
    """`unlearn`, writing the run directory `out`: the unlearned model (loadable by
    transformers), config.yaml (every option, resolved; `sources` adds to what it records),
    metrics.jsonl, result.json and report.md. `out` appears whole or not at all; a non-empty
    one is refused without `overwrite`. Under a launcher every process calls it (with `shard`,
    the weights are sharded with FSDP after the general text is sampled) and the main process
    writes."""
    run, method_config = make_configs(method, config, options, loop=loop)
    questions = _questions(forget)
    watched = _watched(questions, watch)
    with distributed.main_first():  # the main process samples (and caches) the general text
        retain_texts, heldout_texts = _general_text(model, tokenizer, retain, heldout)
    if shard:
        distributed.shard_model(model)
    sources = {"forget": _specs(forget), "retain": "given" if retain else "sampled from the model",
               "retain_mcq": {name: len(items) for name, items in watched.items()},
               "processes": distributed.world_size()} | (sources or {})
    with run_directory(out, overwrite) as staging:
        result = run_unlearning(model, tokenizer, questions, retain_texts, heldout_texts, run, method_config,
                                metrics_path=None if staging is None else staging / "metrics.jsonl",
                                progress=progress, retain_sets=watched)
        save_weights(model, tokenizer, staging)
        if staging is not None:
            write_run(staging, result, run, sources)
    return _warned(result)


def compare(model, tokenizer, forget: Facts, *, settings: CompareSettings | None = None,
            topics: dict[str, list[MCQ]] | None = None, retain: list[str] | None = None,
            heldout: list[str] | None = None, progress: bool = True, journal: str | Path | None = None) -> dict:
    """Compare methods on `forget` at every budget of `settings`, each tuned (optuna) to forget
    what survives the relearning attack, judged on seeds that did not tune it (cir.comparison).
    `topics`: other knowledge, half watched by the collateral budget and half reported (default:
    the built-in topics that ask none of the forget questions). `journal`: a file that records
    every finished run; given again, the comparison continues from it. `model` ends with its
    original weights. The same object as compare.json."""
    settings = settings or CompareSettings()
    questions = settings.forget_questions(_questions(forget))
    retain, heldout = _general_text(model, tokenizer, retain, heldout)
    topics = topic_sets(excluding=questions) if topics is None else topics
    topics = {name: items[: settings.topic_questions] for name, items in topics.items()}
    evaluation = Evaluation(questions, watched_retain_sets(questions, topics, half=0),
                            watched_retain_sets(questions, topics, half=1), retain, heldout)
    if journal is not None:
        journal = Journal(Path(journal), journal_header(model, settings, evaluation))
    return Comparison(model, tokenizer, evaluation, settings, progress, journal).run()


def _warned(result: UnlearningResult) -> UnlearningResult:
    """`result`, its warning (a run that kept the original weights) printed on one line first."""
    if "warning" in result.extra and distributed.is_main():
        print(f"warning: {result.extra['warning']}", file=sys.stderr)
    return result


def _general_text(model, tokenizer, retain: list[str] | None, heldout: list[str] | None):
    """(retain, held-out) general text: each given one, else its half of the model's samples."""
    if retain and heldout:
        return retain, heldout
    sampled_retain, sampled_heldout = general_text_split(model, tokenizer)
    return retain or sampled_retain, heldout or sampled_heldout


def _watched(forget: list[MCQ], watch: dict[str, list[MCQ]] | None) -> dict[str, list[MCQ]]:
    sets = topic_sets(excluding=forget) if watch is None else watch
    return watched_retain_sets(forget, sets, half=0)
