"""Compare unlearning methods as a frontier: each method at every disruption budget, judged in
the worst held-out probe after a relearning attack, with intervals over out-of-sample seeds.

A budget is a pair: the held-out general-text loss may rise by at most B (1.001 = 0.1%), and
the watched part of the other topics may lose at most C of their accuracy (the collateral
budget beside it). Each other topic's questions are in three parts that no run reads twice:
the budget watches a quarter, the method is given another quarter as facts to keep (CIR's
retain-aware collapse), and the tables report the other half, which nothing reads before. Budgets nest (both lists rise), so one unlearning trajectory serves them all:
a run goes on until the largest budget is passed, and each budget keeps the weights of the last
epoch before its own first violation, as a run with that budget alone would.

For every method a seeded optuna search (one objective per budget) looks for the setting that
leaves the least of V in its worst held-out probe after the relearning attack on T, on seed 0's
split. Each budget's best setting is then run on seeds 1..K, each a fresh T/V split that played
no part in choosing it: the tables hold those runs only (mean and 95% t-interval). Every trial
and every seed's run is appended to a journal in the output directory as it finishes, so an
interrupted comparison continues from there.

Every method sees the same forget set, splits, general text, watched topics, attack and
evaluation; only its own hyperparameters change.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from cir.attacks.suite import AttackConfig, suite
from cir.data.mcq import MCQ
from cir.errors import InputError
from cir.evaluation import evaluate_mcq
from cir.fields import check_fields
from cir.loop import one_question, run_unlearning
from cir.methods import get_method, method_names
from cir.models import restore, snapshot
from cir.outputs import to_json
from cir.protocol import RESIDUALS, accuracies, residual_of, worst_probe
from cir.report import markdown_table
from cir.run_config import make_configs

DEFAULT_METHODS = ("cir", "repselect", "npo", "simnpo", "rmu", "circuit_breakers", "gradient_difference")
QUICK_METHODS = ("cir", "npo", "gradient_difference")
DEFAULT_BUDGETS = (0.001, 0.003, 0.01, 0.03)  # rise of the held-out general-text loss: 0.1% ... 3%
# the watched topics' largest accuracy drop beside each budget, by default: at the first, one
# question of the smallest watched quarter (cir.loop.one_question: 0.1 for 11 questions, as 44
# currencies questions give; 0.13 for 8, subjects' currencies), then these, never below the first
LATER_COLLATERAL = (0.15, 0.2, 0.25)
# what every run of a comparison shares: no option may change them (the search sets the step)
SHARED = ("budget", "collateral_budget", "max_epochs", "disruption", "eval_forget", "seed", "method",
          "unlearning_rate")


@dataclass
class CompareSettings:
    """A comparison's rules. Every message of `__post_init__` starts with the setting it is about."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    budgets: tuple[float, ...] = DEFAULT_BUDGETS  # each: the held-out text loss may rise by this share
    # beside each budget (one value: for all); None: one question of the smallest watched quarter at
    # the first, then LATER_COLLATERAL (resolved by `for_watched` once the quarters are known)
    collateral: tuple[float, ...] | None = None
    trials: int = 4  # optuna trials per method, on seed 0's split (GRID on a grid, then the sampler's)
    seeds: int = 3  # runs of each budget's best setting, on seeds 1..seeds (each its own T/V split)
    max_epochs: int = 2
    max_facts: int | None = None  # use only the first N forget questions (quick)
    topic_questions: int | None = None  # use only the first N questions of each other topic (quick)
    seed: int = 0  # the search's sampler seed
    # options fixed for every run, by name (a loop option or a method's) or METHOD.name (one method's)
    options: dict = field(default_factory=dict)
    attacks: AttackConfig = field(default_factory=lambda: AttackConfig(relearn_epochs=2))  # seed k set per run

    def __post_init__(self):
        check_fields(self)
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown or not self.methods:
            raise ValueError(f"methods has unknown method(s) {', '.join(unknown) or '(none given)'} "
                             f"(known: {', '.join(method_names())})")
        if len(set(self.methods)) < len(self.methods):
            raise ValueError("methods names a method twice")
        for name in ("trials", "seeds", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.max_facts is not None and self.max_facts < 4:
            raise ValueError(f"max_facts must be >= 4 (T and V need two questions each), got {self.max_facts}")
        if self.topic_questions is not None and self.topic_questions < 3:
            raise ValueError("topic_questions must be >= 3 (a part watched, a part protected, a part reported)")
        if not self.budgets or any(not 0 < b < 10 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise ValueError(f"budgets must be rising shares of the text loss, each in (0, 10) (0.001 = 0.1%), "
                             f"got {','.join(map(str, self.budgets))}")
        if self.collateral is not None and len(self.collateral) == 1:
            self.collateral *= len(self.budgets)
        if self.collateral is not None and (len(self.collateral) != len(self.budgets)
                                            or any(not 0 <= c <= 1 for c in self.collateral)
                                            or list(self.collateral) != sorted(self.collateral)):
            raise ValueError(f"collateral must be one value or one per budget ({len(self.budgets)}), each in [0, 1] "
                             f"and not falling, got {','.join(map(str, self.collateral))}")
        shared = sorted({key.split(".")[-1] for key in self.options} & set(SHARED))
        if shared:
            raise ValueError(f"options cannot change {', '.join(shared)} in a comparison (the budgets, epochs and "
                             "seed are the comparison's own settings; the search sets the step)")
        for method in self.methods:  # every option must be valid for the methods it applies to
            make_configs(method, options=self.options_for(method))

    @classmethod
    def quick(cls, **changes) -> "CompareSettings":
        """A small comparison for a first look (under 10 minutes on two CPU cores)."""
        values = dict(methods=QUICK_METHODS, trials=1, seeds=1, max_epochs=1, max_facts=12, topic_questions=12,
                      attacks=AttackConfig(relearn_epochs=1))
        return cls(**(values | changes))

    def for_watched(self, watched: dict[str, list]) -> "CompareSettings":
        """These settings with the default collateral budgets made figures for the watched
        quarters `watched` (unchanged where they are given)."""
        if self.collateral is not None:
            return self
        first = one_question(watched) if watched else 0.0  # nothing watched: the budget reads nothing
        later = [max(first, LATER_COLLATERAL[min(i, len(LATER_COLLATERAL) - 1)]) for i in range(len(self.budgets) - 1)]
        return dataclasses.replace(self, collateral=(first, *later))

    def options_for(self, method: str) -> dict:
        """The fixed options that apply to `method`: unprefixed ones, and its own `METHOD.name`."""
        def owner(key: str) -> str | None:
            head = key.split(".", 1)[0]
            return head if "." in key and head in method_names() else None

        return {key: value for key, value in self.options.items() if owner(key) in (None, method)}

    def forget_questions(self, items: list[MCQ]) -> list[MCQ]:
        """The questions a comparison forgets: the first `max_facts`, at least 4 (for T and V)."""
        items = items[: self.max_facts]
        if len(items) < 4:
            raise InputError(f"need at least 4 forget questions to split into T and V, got {len(items)}")
        return items

    def attack_config(self, seed: int) -> AttackConfig:
        return dataclasses.replace(self.attacks, seed=seed)

    def within(self, row: dict, index: int) -> bool:
        """Whether an epoch's row is within budget `index` (text loss and collateral)."""
        return (math.isfinite(row["loss_ratio"]) and row["loss_ratio"] <= 1 + self.budgets[index]
                and row.get("collateral", 0.0) <= self.collateral[index])

    def label(self, index: int) -> str:
        return f"{100 * self.budgets[index]:g}% text loss, collateral {self.collateral[index]:g}"


CIR_LOSSES = ("true_logit", "saturating_logit", "neg_cross_entropy", "mlp_breaking")
SEARCHED = ("forget_loss",)  # options the search sets besides the step (CIR's loss): no default fixes them


def benchmark_options(benchmark: str | None) -> dict:
    """The options a comparison on `benchmark` fixes for its methods: the benchmark's own defaults
    (cir.benchmarks), less the step and CIR's forget loss, which the search sets."""
    from cir.benchmarks import method_defaults

    return {k: v for k, v in method_defaults(benchmark).items() if k.split(".")[-1] not in SHARED + SEARCHED}


def distributions(method: str) -> dict:
    """The search space: the step size on a log scale over the method's range, and for CIR also
    its forget loss."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    low, high = get_method(method).Config.rate_range
    space = {"unlearning_rate": FloatDistribution(low, high, log=True)}
    if method == "cir":
        space["forget_loss"] = CategoricalDistribution(CIR_LOSSES)
    return space


def options_of(params: dict) -> dict:
    """A trial's options: its parameters, the step to 4 significant digits."""
    return {k: float(f"{v:.4g}") if k == "unlearning_rate" else v for k, v in params.items()}


GRID = 3  # trials placed on a grid before the sampler chooses


def grid_trial(method: str, number: int, trials: int) -> dict:
    """Trial `number` of the first min(trials, GRID): steps evenly spread over the method's range
    on a log scale (one trial: its middle; two: a quarter and three quarters), each with the
    method's default loss. Budgets from 0.1% to 3% want steps far apart, which a few random
    draws need not give."""
    config = get_method(method).Config
    low, high = config.rate_range
    n = min(trials, GRID)
    params = {"unlearning_rate": low * (high / low) ** ((number + 0.5) / n)}
    if method == "cir":
        params["forget_loss"] = config().forget_loss
    return params


def as_overrides(options: dict) -> list[str]:
    """Options as `--set` would give them, for the tables and compare.json."""
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()]


@dataclass
class Evaluation:
    """What every run is measured on, the same for every method."""

    items: list[MCQ]
    watched: dict[str, list[MCQ]]  # other topics' part the collateral budget watches during unlearning
    reported: dict[str, list[MCQ]]  # their part on which the tables report the change: nothing reads it before
    retain_texts: list[str]
    heldout_texts: list[str]
    # their part given to the method as facts to keep (CIR's retain-aware collapse reads it); None:
    # the watched part, so that the budget watches the very facts the method was shown
    protected: dict[str, list[MCQ]] | None = None


# ---------------------------------------------------------------- the journal
class Journal:
    """The records of a comparison as they finish, one JSON line each, in `path`. The first line
    holds what the comparison is (settings, forget questions, model); a journal of another
    comparison is refused. A last line cut short by an interruption is ignored."""

    def __init__(self, path: Path, header: dict):
        self.path, self.records = Path(path), []
        if self.path.exists():
            parsed = read_journal(self.path)
            if parsed[0] != header:
                raise InputError("holds a comparison with other settings, questions or model (use --overwrite to "
                                 "start over)", path=str(self.path))
            self.records = parsed[1:]
            write_journal(self.path, parsed)
        else:
            write_journal(self.path, [header])

    def add(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(to_json(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def find(self, **keys) -> dict | None:
        return next((r for r in self.records if all(r.get(k) == v for k, v in keys.items())), None)


# the fields of each kind of journal record
RECORD_FIELDS = {
    "header": ("settings", "model", "inputs"),
    "trial": ("method", "number", "params", "options", "overrides", "stop_reason", "epochs", "budgets", "seconds"),
    "final": ("method", "number", "seed", "stop_reason", "epochs", "budgets", "seconds"),
    "before": ("seed", "V_before", "V_worst_before", "topics"),
    "original": ("seed", "quantize", "row"),
    "never_taught": ("seed", "row"),
}


def _is_record(record, kind: str | None) -> bool:
    """Whether `record` is a journal record (of `kind`, when given; a header only first)."""
    if not isinstance(record, dict) or record.get("kind") not in RECORD_FIELDS:
        return False
    if (kind or record["kind"]) != record["kind"] or (kind is None and record["kind"] == "header"):
        return False
    return all(name in record for name in RECORD_FIELDS[record["kind"]])


def write_journal(path: Path, records: list[dict]) -> None:
    """Replace the journal at `path` with `records` (header first), all at once: a reader sees the
    old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(to_json(r) + "\n" for r in records))
    os.replace(tmp, path)


def read_journal(path: Path) -> list[dict]:
    """A journal's records, up to a line cut short (it and anything after it are done again); a
    line that is not a record of a journal, or a journal without its header, is refused."""
    parsed = []
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not raw.strip() and number > 1:
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            record = None
        except json.JSONDecodeError:
            if number > 1:
                break
            record = None
        if not _is_record(record, "header" if number == 1 else None):
            raise InputError("not a journal record (use --overwrite to start over)", path=str(path), line=number)
        parsed.append(record)
    return parsed


def journal_header(model, settings: CompareSettings, evaluation: Evaluation, benchmark: str | None = None) -> dict:
    """What a journal belongs to: the settings, the benchmark, the model, and a digest of the forget
    questions, the kept topics' questions (watched, reported, protected) and the general text, as JSON
    gives them back."""
    import hashlib

    def questions(items: list[MCQ]) -> list:
        return [[item.question, item.choices, item.answer] for item in items]

    digest = hashlib.sha256(json.dumps(
        questions(evaluation.items) + [evaluation.retain_texts, evaluation.heldout_texts]
        + [{name: questions(items) for name, items in sets.items()}
           for sets in (evaluation.watched, evaluation.reported)]
        + ([] if evaluation.protected is None else [{name: questions(items) for name, items in
                                                      evaluation.protected.items()}])).encode()).hexdigest()
    header = {"kind": "header", "settings": dataclasses.asdict(settings),
              "model": str(getattr(model.config, "name_or_path", "")), "inputs": digest[:16]}
    if benchmark is not None:
        header["benchmark"] = benchmark
    return json.loads(to_json(header))


class _Memory:
    """A stand-in journal that keeps its records in memory (the Python API without a directory)."""

    def __init__(self):
        self.records = []

    def add(self, record: dict) -> None:
        self.records.append(record)

    find = Journal.find


# ---------------------------------------------------------------- the comparison
STAGES = ("V_after_unlearning", "V_worst_after_unlearning", "V_after_relearning", "V_worst_after_relearning",
          "V_after_quantisation", "V_worst_after_quantisation")


class Comparison:
    def __init__(self, model, tokenizer, evaluation: Evaluation, settings: CompareSettings, progress: bool = True,
                 journal: Journal | None = None, never_taught=None):
        self.base, self.tokenizer, self.evaluation = model, tokenizer, evaluation
        self.settings = settings = settings.for_watched(evaluation.watched)
        self.never_taught = never_taught  # the model before the forget set was taught, where there is one
        self.original = snapshot(model.state_dict())
        self.progress = progress
        self.journal = journal if journal is not None else _Memory()
        self.splits = {k: settings.attack_config(k).split(evaluation.items) for k in range(settings.seeds + 1)}
        self._original_rows: dict[tuple[int, bool], dict] = {}
        self._reference: dict | None = None

    def reference(self) -> dict:
        """The original model's held-out text loss and watched accuracies, measured once for all runs."""
        if self._reference is None:
            from cir.evaluation import text_loss
            from cir.loop import Collateral
            from cir.models import in_float32

            model = self._fresh()
            with in_float32(model):  # as the loop measures (RunConfig.measure_float32)
                self._reference = {"text_loss": text_loss(model, self.tokenizer, self.evaluation.heldout_texts),
                                   "retain_accuracy": Collateral(model, self.tokenizer, self.evaluation.watched).original}
        return self._reference

    def _fresh(self):
        self.base.load_state_dict(self.original)
        return self.base

    # ------------------------------------------------------------ measurements
    def before(self, seed: int) -> dict:
        """The original model on seed `seed`'s V, and the reported topics (journalled once)."""
        found = self.journal.find(kind="before", seed=seed)
        if found is None:
            model = self._fresh()
            held_out = self.splits[seed][1]
            found = {"kind": "before", "seed": seed, "V_before": evaluate_mcq(model, self.tokenizer, held_out).accuracy,
                     "V_worst_before": worst_probe(model, self.tokenizer, held_out)["V worst"],
                     "topics": accuracies(model, self.tokenizer, self.evaluation.reported)}
            self.journal.add(found)
        return found

    def measure(self, model, seed: int, quantize: bool) -> dict:
        """The current weights on seed `seed`'s split: V after unlearning (cloze and worst probe),
        the reported topics, and the attacks (relearning; with `quantize` also 4-bit)."""
        train, held_out = self.splits[seed]
        row = {"V_after_unlearning": evaluate_mcq(model, self.tokenizer, held_out).accuracy,
               "V_worst_after_unlearning": worst_probe(model, self.tokenizer, held_out)["V worst"],
               "topics": accuracies(model, self.tokenizer, self.evaluation.reported)}
        attacks = ("relearn", "quantize") if quantize else ("relearn",)
        rows = suite(model, self.tokenizer, train, held_out, config=self.settings.attack_config(seed), attacks=attacks)
        row |= {"V_after_relearning": rows["relearn"]["V"], "V_worst_after_relearning": rows["relearn"]["V worst"]}
        if quantize:
            row |= {"V_after_quantisation": rows["quantize"]["V"],
                    "V_worst_after_quantisation": rows["quantize"]["V worst"]}
        return row

    def original_row(self, seed: int, quantize: bool) -> dict:
        """`measure` of the original weights (what a budget keeps when no epoch fits in it): the
        same for every method, so measured once per seed."""
        key = (seed, quantize)
        if key not in self._original_rows:
            found = self.journal.find(kind="original", seed=seed, quantize=quantize)
            if found is None:
                found = {"kind": "original", "seed": seed, "quantize": quantize,
                         "row": self.measure(self._fresh(), seed, quantize)}
                self.journal.add(found)
            self._original_rows[key] = found["row"]
        return self._original_rows[key]

    def never_taught_row(self, seed: int) -> dict | None:
        """`measure` of the never-taught model on seed `seed`'s split, both attacks (journalled
        once per seed): what "never learned" gives under the same attacks."""
        if self.never_taught is None:
            return None
        found = self.journal.find(kind="never_taught", seed=seed)
        if found is None:
            found = {"kind": "never_taught", "seed": seed, "row": self.measure(self.never_taught, seed, True)}
            self.journal.add(found)
        return found["row"]

    # ------------------------------------------------------------ one trajectory
    def trajectory(self, method: str, options: dict, seed: int, budgets: list[int], quantize: bool) -> dict:
        """Unlearn with `method` from the original weights on seed `seed` until the largest budget is
        passed; then, for each budget of `budgets`, the weights it keeps (the last epoch before its
        first violation) measured by `measure`, each distinct epoch once."""
        s = self.settings
        shared = {"max_epochs": s.max_epochs, "budget": 1 + max(s.budgets), "collateral_budget": max(s.collateral),
                  "disruption": "loss_ratio", "eval_forget": False, "seed": seed}
        run, method_config = make_configs(method, options=s.options_for(method) | shared | options)
        reference = self.reference()
        model = self._fresh()
        alive, kept, saved = set(range(len(s.budgets))), {i: 0 for i in range(len(s.budgets))}, {}
        trained = {}

        def on_epoch(epoch: int, row: dict, params: dict) -> None:
            trained.update(params)
            for i in sorted(alive):
                if s.within(row, i):
                    kept[i] = epoch
                else:
                    alive.discard(i)
            wanted = {kept[i] for i in budgets}
            if epoch in wanted and epoch:
                saved[epoch] = snapshot(params)
            for old in set(saved) - wanted:
                del saved[old]

        result = run_unlearning(model, self.tokenizer, self.evaluation.items, self.evaluation.retain_texts,
                                self.evaluation.heldout_texts, run, method_config, progress=False,
                                retain_sets=self.evaluation.watched, protect_sets=self.evaluation.protected,
                                on_epoch=on_epoch, reference=reference)
        setup = result.seconds - sum(m["seconds"] for m in result.metrics[1:])
        measured, rows = {}, {}
        for i in budgets:
            epoch = kept[i]
            if epoch not in measured:
                if epoch == 0:
                    measured[0] = self.original_row(seed, quantize)
                else:
                    model = self._fresh()
                    restore(trained, saved[epoch])
                    measured[epoch] = self.measure(model, seed, quantize)
            metrics = result.metrics[epoch]
            seconds = setup + sum(m["seconds"] for m in result.metrics[1:epoch + 1])
            rows[str(i)] = {"kept_epoch": epoch, "loss_ratio": metrics["loss_ratio"],
                            "collateral": metrics.get("collateral", 0.0),
                            "seconds_per_fact": seconds / len(self.evaluation.items)} | measured[epoch]
        self._fresh()
        epochs = [{"loss_ratio": m["loss_ratio"], "collateral": m.get("collateral", 0.0)} for m in result.metrics]
        return {"stop_reason": result.stop_reason, "epochs": epochs, "budgets": rows}

    # ------------------------------------------------------------ the search and the seeds
    def search(self, method: str, bar) -> list[dict]:
        """The method's trials on seed 0's split, each measured at every budget (journalled)."""
        import optuna

        s = self.settings
        space = distributions(method)
        study = optuna.create_study(directions=["minimize"] * len(s.budgets))
        trials = []
        for number in range(s.trials):
            found = self.journal.find(kind="trial", method=method, number=number)
            if found is None:
                if number < GRID:
                    study.enqueue_trial(grid_trial(method, number, s.trials))
                # a sampler seeded per trial: a resumed search draws what an uninterrupted one would
                study.sampler = optuna.samplers.TPESampler(seed=s.seed * 1_000_003 + number)
                trial = study.ask(space)
                bar.set_postfix_str(f"{method}: trial {number + 1}/{s.trials}")
                options = options_of(trial.params)
                start = time.perf_counter()
                found = {"kind": "trial", "method": method, "number": number, "params": trial.params,
                         "options": options, "overrides": as_overrides(options)}
                found |= self.trajectory(method, options, 0, list(range(len(s.budgets))), quantize=False)
                found["seconds"] = time.perf_counter() - start
                study.tell(trial, objectives(found, len(s.budgets)))
                self.journal.add(found)
            else:
                study.add_trial(optuna.trial.create_trial(params=found["params"], distributions=space,
                                                          values=objectives(found, len(s.budgets))))
            trials.append(found)
            bar.update(1)
        return trials

    def finals(self, method: str, best: dict[int, dict], bar) -> dict[int, list[dict]]:
        """Each budget's best setting on seeds 1..K: one run per setting and seed, serving every
        budget that chose it (journalled). {budget: [row per seed]}"""
        by_trial: dict[int, list[int]] = {}
        for i, trial in best.items():
            by_trial.setdefault(trial["number"], []).append(i)
        runs = {i: [] for i in best}
        for number, budgets in by_trial.items():
            options = best[budgets[0]]["options"]
            for seed in range(1, self.settings.seeds + 1):
                found = self.journal.find(kind="final", method=method, number=number, seed=seed)
                if found is None:
                    bar.set_postfix_str(f"{method}: setting of trial {number + 1}, seed {seed}")
                    start = time.perf_counter()
                    found = {"kind": "final", "method": method, "number": number, "seed": seed}
                    found |= self.trajectory(method, options, seed, budgets, quantize=True)
                    found["seconds"] = time.perf_counter() - start
                    self.journal.add(found)
                before, never = self.before(seed), self.never_taught_row(seed)
                for i in budgets:
                    row = found["budgets"][str(i)]
                    runs[i].append({"seed": seed, **{k: before[k] for k in ("V_before", "V_worst_before")},
                                    **row, "topics_change": {t: row["topics"][t] - before["topics"][t]
                                                             for t in row["topics"]}} | residual_of(row, never))
                bar.update(len(budgets))
        return runs

    def run(self) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        n = len(s.budgets)
        bar = tqdm(total=len(s.methods) * (s.trials + s.seeds * n), desc="compare", disable=not self.progress)
        methods = {}
        for method in s.methods:
            trials = self.search(method, bar)
            best = {i: best_trial(trials, i) for i in range(n)}
            runs = self.finals(method, best, bar)
            methods[method] = {"trials": trials, "budgets": [
                {"budget": s.budgets[i], "collateral_budget": s.collateral[i], "best_trial": best[i]["number"],
                 "best": best[i]["overrides"], "runs": runs[i], "summary": summarise(runs[i])} for i in range(n)]}
        bar.close()
        self._fresh()
        chance = statistics.fmean(1 / len(item.choices) for item in self.evaluation.items)
        return {"settings": dataclasses.asdict(s), "n_facts": len(self.evaluation.items), "chance": chance,
                "V_size": len(self.splits[0][1]),
                "splits": {str(k): [self.evaluation.items.index(item) for item in held_out]
                           for k, (_, held_out) in self.splits.items()},  # V's questions per seed
                "watched": {t: len(v) for t, v in self.evaluation.watched.items()},
                "protected": None if self.evaluation.protected is None
                else {t: len(v) for t, v in self.evaluation.protected.items()},
                "reported": {t: len(v) for t, v in self.evaluation.reported.items()},
                "before": [self.before(k) for k in range(1, s.seeds + 1)], "methods": methods,
                "never_taught": None if self.never_taught is None
                else [self.never_taught_row(k) for k in range(1, s.seeds + 1)]}


def objectives(trial: dict, n: int) -> list[float]:
    """A trial's value at each budget: V in the worst held-out probe after relearning."""
    return [trial["budgets"][str(i)]["V_worst_after_relearning"] for i in range(n)]


# ---------------------------------------------------------------- statistics and output
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def best_trial(trials: list[dict], index: int) -> dict:
    """Budget `index`'s best trial: the lowest V in the worst probe after relearning; of a tie, the
    larger drop before the attack (the lower V in the worst probe after unlearning: what the
    method can forget, within the budget), then the lower cloze V after relearning, then the
    first trial."""
    def key(trial: dict) -> tuple:
        cell = trial["budgets"][str(index)]
        return (cell["V_worst_after_relearning"], cell["V_worst_after_unlearning"], cell["V_after_relearning"],
                trial["number"])

    return min(trials, key=key)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t confidence interval); the half-width is nan for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    df = len(values) - 1
    t = T_975[max(k for k in T_975 if k <= df)]  # the next tabulated df below: a slightly wider interval
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


SUMMARY_KEYS = ("V_before", "V_worst_before") + STAGES + ("loss_ratio", "collateral", "seconds_per_fact")


def summarise(runs: list[dict]) -> dict:
    """Mean and 95% interval over the seeds of every measurement, the drop that survives relearning
    in the worst probe, and the worst reported topic's change."""
    out = {key: mean_ci([r[key] for r in runs]) for key in SUMMARY_KEYS}
    out["drop"] = mean_ci([r["V_worst_before"] - r["V_worst_after_relearning"] for r in runs])
    out["drop_before_attack"] = mean_ci([r["V_worst_before"] - r["V_worst_after_unlearning"] for r in runs])
    out["topics_worst_change"] = mean_ci([min(r["topics_change"].values(), default=0.0) for r in runs])
    out["topics_change"] = {t: mean_ci([r["topics_change"][t] for r in runs]) for t in runs[0]["topics_change"]}
    for key in RESIDUALS:
        if f"residual_{key}" in runs[0]:
            out[f"residual_{key}"] = mean_ci([r[f"residual_{key}"] for r in runs])
    return out


def _cell(value, digits: int = 3, sign: bool = False) -> str:
    mean, half = value
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text if math.isnan(half) else f"{text} ± {half:.{digits}f}"


def _fixed(value: float | None, digits: int) -> str:
    """A number as the tables show it; None (a NaN, as a journal read back gives it) as nan."""
    return "nan" if value is None else f"{value:.{digits}f}"


def budget_table(result: dict, index: int) -> str:
    header = ["method", "V before", "V after unlearning", "V after relearning",
              f"V after {result['settings']['attacks']['quantize_bits']}-bit", "V worst probe after relearning",
              "drop before the attack (worst probe)", "drop (worst probe)", "other topics, worst Δ", "loss ratio", "collateral (watched)", "s / fact",
              "setting (trial)"]
    residual = result.get("never_taught") is not None
    if residual:  # beside the drop: what is left above the never-taught model under each attack
        header[8:8] = ["residual, worst probe after relearning", "residual, worst probe after 4-bit"]
    rows = []
    for name, entry in result["methods"].items():
        cell = entry["budgets"][index]
        s = cell["summary"]
        row = [name, _cell(s["V_before"]), _cell(s["V_after_unlearning"]), _cell(s["V_after_relearning"]),
               _cell(s["V_after_quantisation"]), _cell(s["V_worst_after_relearning"]),
               _cell(s.get("drop_before_attack", (math.nan, math.nan)), sign=True), _cell(s["drop"], sign=True),
               _cell(s["topics_worst_change"], sign=True),
               _cell(s["loss_ratio"], 4), _cell(s["collateral"]), _cell(s["seconds_per_fact"], 2),
               " ".join(f"`{o}`" for o in cell["best"]) + f" ({cell['best_trial'] + 1})" + _unlearned(cell)]
        if residual:
            row[8:8] = [_cell(s[f"residual_{key}"], sign=True) for key in RESIDUALS]
        rows.append(row)
    return markdown_table(header, rows)


def _unlearned(cell: dict) -> str:
    """The mark of a cell whose runs kept the original weights on some seeds (epoch 1 already
    passed the budget): nothing was unlearned there."""
    kept_original = sum(run["kept_epoch"] == 0 for run in cell["runs"])
    return f"; **nothing unlearned** on {kept_original} of {len(cell['runs'])} seeds (kept epoch 0)" if kept_original else ""


def reading(result: dict, index: int) -> str:
    """CIR's drop in the worst probe after relearning against the best baseline's, at one budget."""
    drops = {m: e["budgets"][index]["summary"]["drop"][0] for m, e in result["methods"].items()}
    if "cir" not in drops or len(drops) < 2:
        return ""
    best, value = max(((m, v) for m, v in drops.items() if m != "cir"), key=lambda mv: mv[1])
    if drops["cir"] <= 0:
        verdict = "CIR keeps no drop"
    elif value <= 0:
        verdict = "no baseline keeps a drop, so the ratio is unbounded (read CIR's own drop and its interval)"
    else:
        ratio = drops["cir"] / value
        verdict = f"CIR / best baseline = {ratio:.1f}x ({'at least' if ratio >= 5 else 'less than'} 5x)"
    return (f"Drop that survives relearning, in the worst probe (mean over seeds): CIR {drops['cir']:+.3f}, "
            f"best baseline {best} {value:+.3f}; {verdict}.")


def asymmetric(result: dict) -> str:
    """The CIR paper's setting: CIR at the smallest budget, every baseline at the largest."""
    settings = result["settings"]
    if "cir" not in result["methods"] or len(result["methods"]) < 2 or len(settings["budgets"]) < 2:
        return ""
    header = ["method", "budget", "V worst probe after relearning", "drop (worst probe)", "other topics, worst Δ",
              "loss ratio"]
    rows = []
    for name, entry in result["methods"].items():
        index = 0 if name == "cir" else len(settings["budgets"]) - 1
        s = entry["budgets"][index]["summary"]
        rows.append([name, f"{100 * settings['budgets'][index]:g}%", _cell(s["V_worst_after_relearning"]),
                     _cell(s["drop"], sign=True), _cell(s["topics_worst_change"], sign=True), _cell(s["loss_ratio"], 4)])
    return markdown_table(header, rows)


def unreached(result: dict) -> str:
    """The methods whose search never met a budget: every trial kept its last epoch at every
    budget, so nothing shows where the method's step would start to cost what a budget allows,
    and its cells may understate it."""
    notes = []
    for name, entry in result["methods"].items():
        trials = entry["trials"]
        if trials and all(c["kept_epoch"] == len(t["epochs"]) - 1 for t in trials for c in t["budgets"].values()):
            worst = max((e["loss_ratio"] for t in trials for e in t["epochs"][1:] if e["loss_ratio"] is not None),
                        default=float("nan"))
            steps = sorted(t["params"].get("unlearning_rate", float("nan")) for t in trials)
            notes.append(f"- {name}: every trial (steps {steps[0]:.4g}-{steps[-1]:.4g}) kept its last epoch at every "
                         f"budget, the text loss at most x{worst:.4f}; a wider range finds where it starts to cost "
                         "(`python bench/wider_search.py`)")
    if not notes:
        return ""
    return "\n".join(["The search did not reach these methods' budgets, so their cells may understate them:", ""]
                     + notes)


def trials_table(result: dict) -> str:
    """Every search trial (seed 0's split): its setting, each epoch's disruption, why it stopped,
    and per budget the epoch kept and V in the worst probe after relearning."""
    budgets = result["settings"]["budgets"]
    header = ["method", "trial", "setting", "epochs: loss ratio / collateral", "stopped by"]
    header += [f"{100 * b:g}%: kept epoch, V worst after relearning" for b in budgets]
    rows = []
    for name, entry in result["methods"].items():
        for trial in entry["trials"]:
            epochs = ", ".join(f"{_fixed(e['loss_ratio'], 4)} / {_fixed(e['collateral'], 3)}"
                               for e in trial["epochs"][1:])
            cells = [trial["budgets"][str(i)] for i in range(len(budgets))]
            rows.append([name, str(trial["number"] + 1), " ".join(f"`{o}`" for o in trial["overrides"]),
                         epochs or "none", trial["stop_reason"]]
                        + [f"{c['kept_epoch']}, {c['V_worst_after_relearning']:.3f}" for c in cells])
    return markdown_table(header, rows)


def markdown(result: dict) -> str:
    settings = result["settings"]
    lines = []
    for index in range(len(settings["budgets"])):
        lines += [f"### Budget: {100 * settings['budgets'][index]:g}% text loss, collateral "
                  f"{settings['collateral'][index]:g}", "", budget_table(result, index), ""]
        if text := reading(result, index):
            lines += [text, ""]
    if table := asymmetric(result):
        lines += [f"### The paper's asymmetric setting: CIR at {100 * settings['budgets'][0]:g}%, the baselines at "
                  f"{100 * settings['budgets'][-1]:g}%", "", table, ""]
    attacks = settings["attacks"]
    before = result["before"]
    lines += [
        f"- {result['n_facts']} forget questions, all unlearned; V = {result['V_size']} held-out questions that the "
        f"relearning attack (Adam, lr {attacks['relearn_lr']}, {attacks['relearn_epochs']} epochs on the MLPs, "
        f"trained on T) never sees; its best epoch is reported; chance is {result['chance']:.2f}. The worst probe is "
        "the highest accuracy on V over the held-out probes (never in a training text), each also read the other "
        "way (the least likely choice as the answer).",
        f"- a budget: held-out general-text loss ratio <= 1 + B, and the watched part of the other topics "
        f"({', '.join(f'{t} {n}' for t, n in result['watched'].items())} questions) losing at most the collateral "
        f"budget; the weights of the last epoch within it are kept, at most {settings['max_epochs']} epochs",
        "- facts to keep given to the methods (CIR's retain-aware collapse): "
        + ("the watched part itself" if not result.get("protected") else
           "another part of the other topics, apart from the watched and the reported ("
           + ", ".join(f"{t} {n}" for t, n in result["protected"].items()) + " questions)"),
        f"- search: {settings['trials']} optuna trials (TPE, seeded {settings['seed']}; one objective per budget) per "
        f"method over its step size (CIR also over its forget loss), the first {min(settings['trials'], GRID)} spread "
        f"evenly over its range (log scale, default loss), then the sampler's; each measured on seed 0's split; each budget's best setting (trial number in brackets) then runs on seeds "
        f"1-{settings['seeds']}, each a new T/V split: the table holds only those (mean ± 95% t-interval when more "
        "than one)",
        "- other topics: the change of the reported half (neither watched nor given to a method), after "
        "unlearning; the worst topic's (before: "
        + ", ".join(f"{t} {statistics.fmean(b['topics'][t] for b in before):.3f}" for t in before[0]["topics"]) + ")",
        "", "### Every search trial (seed 0's split)", "", trials_table(result),
    ]
    if text := unreached(result):
        lines += ["", text]
    return "\n".join(lines)


def plot(result: dict, out: Path) -> list[str]:
    """frontier.png: per method, V in the worst probe after relearning against the text loss rise
    and against the other topics' worst change, one point per budget."""
    from cir.report import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    panels = (("loss_ratio", "held-out text loss rise (%)", lambda v: 100 * (v - 1)),
              ("topics_worst_change", "other topics: worst change in accuracy", lambda v: v))
    for ax, (key, label, scale) in zip(axes, panels):
        for name, entry in result["methods"].items():
            cells = [cell["summary"] for cell in entry["budgets"]]
            x = [scale(s[key][0]) for s in cells]
            y = [s["V_worst_after_relearning"][0] for s in cells]
            errors = [0 if math.isnan(s["V_worst_after_relearning"][1]) else s["V_worst_after_relearning"][1]
                      for s in cells]
            ax.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=name)
        ax.axhline(result["chance"], color="grey", linestyle=":", label="chance")
        ax.set_xlabel(label)
    axes[0].set_ylabel("V, worst probe, after relearning")
    axes[0].set_ylim(0, 1.05)
    axes[1].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, out / "frontier.png", dpi=120)
    return ["frontier.png"]


def write(result: dict, out: Path, command: str) -> None:
    from cir.outputs import write_file, write_json

    write_json(out / "compare.json", result | {"command": command})
    plots = plot(result, out)
    text = ["# Methods compared at every budget", "", "```", command, "```", "", markdown(result), ""]
    text += [f"![{p}]({p})" for p in plots]
    write_file(out / "compare.md", "\n".join(text) + "\n")
