"""Compare unlearning methods at one disruption budget, judged after a relearning attack.

For every method: a seeded optuna search over its step size (CIR also over its forget loss)
that minimises the accuracy on V *after* the relearning attack on T, every run stopped by the
same held-out general-text budget (rolled back to its last in-budget epoch). The best setting
is then run with K seeds (seed k also draws the T/V split), and each run is measured the same
way: V before, after unlearning, after relearning on T, after 4-bit quantisation; the other
topics' accuracy; disruption; seconds per fact.

Every method sees the same forget set, the same splits, the same general text, the same attack
and the same evaluation; only its own hyperparameters change.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from cir.attacks.suite import AttackConfig, accuracies, suite
from cir.data.mcq import MCQ
from cir.errors import InputError
from cir.evaluation import evaluate_mcq
from cir.methods import get_method, method_names
from cir.models import snapshot
from cir.report import markdown_table
from cir.loop import make_configs, run_unlearning

DEFAULT_METHODS = ("cir", "gradient_difference", "npo", "rmu", "circuit_breakers")
QUICK_METHODS = ("cir", "gradient_difference", "npo")
# what every run of a comparison shares: no option may change them (the search sets the step)
SHARED = ("budget", "max_epochs", "disruption", "eval_forget", "seed", "method", "unlearning_rate")


@dataclass
class CompareSettings:
    """A comparison's rules. Every message of `__post_init__` starts with the setting it is about."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    budget: float = 1.001  # held-out general-text loss ratio, the same for every method
    trials: int = 2  # optuna trials per method
    seeds: int = 1  # runs of each method's best setting (seed k also draws the T/V split)
    max_epochs: int = 4
    max_facts: int | None = None  # use only the first N forget questions (quick)
    seed: int = 0  # the search's sampler seed
    # options fixed for every run, by name (a loop option or a method's) or METHOD.name (one method's)
    options: dict = field(default_factory=dict)
    attacks: AttackConfig = field(default_factory=AttackConfig)  # as in the demo; seed k is set per run

    def __post_init__(self):
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown or not self.methods:
            raise ValueError(f"methods has unknown method(s) {', '.join(unknown) or '(none given)'} "
                             f"(known: {', '.join(method_names())})")
        for name in ("trials", "seeds", "max_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.budget <= 0:
            raise ValueError("budget must be > 0")
        shared = sorted({key.split(".")[-1] for key in self.options} & set(SHARED))
        if shared:
            raise ValueError(f"options cannot change {', '.join(shared)} in a comparison (the budget, epochs and "
                             "seed are the comparison's own settings; the search sets the step)")
        for method in self.methods:  # every option must be valid for the methods it applies to
            make_configs(method, options=self.options_for(method))

    @classmethod
    def quick(cls, **changes) -> "CompareSettings":
        """A small comparison for a first look (about 10 minutes on two CPU cores)."""
        values = dict(methods=QUICK_METHODS, trials=2, seeds=1, max_epochs=2, max_facts=16,
                      attacks=AttackConfig(relearn_epochs=3))
        return cls(**(values | changes))

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


CIR_LOSSES = ("true_logit", "neg_cross_entropy", "mlp_breaking")


def search_space(trial, method: str) -> dict:
    """One trial's options: the step size on a log scale over the method's range (4 significant
    digits), and for CIR also the forget loss."""
    low, high = get_method(method).Config.rate_range
    options = {"unlearning_rate": float(f"{trial.suggest_float('unlearning_rate', low, high, log=True):.4g}")}
    if method == "cir":
        options["forget_loss"] = trial.suggest_categorical("forget_loss", CIR_LOSSES)
    return options


def first_trial(method: str) -> dict:
    """Every search starts at the middle of the method's step range (log scale), with its
    default loss; the sampler chooses from the second trial on."""
    config = get_method(method).Config
    low, high = config.rate_range
    params = {"unlearning_rate": math.sqrt(low * high)}
    if method == "cir":
        params["forget_loss"] = config().forget_loss
    return params


def as_overrides(options: dict) -> list[str]:
    """Options as `--set` would give them, for the table and compare.json."""
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()]


@dataclass
class Evaluation:
    """What every run is measured on, the same for every method."""

    items: list[MCQ]
    topics: dict[str, list[MCQ]]  # other topics, for collateral damage
    retain_texts: list[str]
    heldout_texts: list[str]


class Comparison:
    def __init__(self, model, tokenizer, evaluation: Evaluation, settings: CompareSettings, progress: bool = True):
        self.base, self.tokenizer, self.evaluation, self.settings = model, tokenizer, evaluation, settings
        self.original = snapshot(model.state_dict())
        self.progress = progress
        self.splits = {k: settings.attack_config(k).split(evaluation.items) for k in range(settings.seeds)}
        self.before = {k: evaluate_mcq(model, tokenizer, self.splits[k][1]).accuracy for k in range(settings.seeds)}
        self.topics_before = accuracies(model, tokenizer, evaluation.topics)

    def _fresh(self):
        self.base.load_state_dict(self.original)
        return self.base

    def unlearn(self, method: str, options: dict, seed: int):
        """Unlearn with `method` from the original weights; (model, run result)."""
        shared = {"max_epochs": self.settings.max_epochs, "budget": self.settings.budget,
                  "disruption": "loss_ratio", "eval_forget": False, "seed": seed}
        run, method_config = make_configs(method, options=self.settings.options_for(method) | shared | options)
        model = self._fresh()
        result = run_unlearning(model, self.tokenizer, self.evaluation.items, self.evaluation.retain_texts,
                                self.evaluation.heldout_texts, run, method_config, progress=False)
        return model, result

    def attack(self, model, seed: int, attack: str) -> dict:
        """One attack of the suite on seed `seed`'s split (on a copy): its row."""
        train, held_out = self.splits[seed]
        return suite(model, self.tokenizer, train, held_out, config=self.settings.attack_config(seed),
                     attacks=(attack,))[attack]

    def attacked(self, method: str, options: dict, seed: int):
        """Unlearn on seed `seed`'s split; (row with V after unlearning and after relearning,
        the unlearned model, the run result)."""
        model, result = self.unlearn(method, options, seed=seed)
        relearned = self.attack(model, seed, "relearn")
        row = {"options": options, "overrides": as_overrides(options), "kept_epoch": result.kept_epoch,
               "stop_reason": result.stop_reason, "loss_ratio": result.kept["loss_ratio"],
               "V_after_unlearning": evaluate_mcq(model, self.tokenizer, self.splits[seed][1]).accuracy,
               "V_after_relearning": relearned["V"], "V_worst_after_relearning": relearned["V worst"]}
        return row, model, result

    def trial(self, method: str, options: dict) -> dict:
        """One search trial, on seed 0's split. The row keeps the unlearned weights and the run
        result under "_state" and "_result", so the best trial need not be run again."""
        start = time.perf_counter()
        row, model, result = self.attacked(method, options, seed=0)
        row["seconds"] = time.perf_counter() - start
        row["_state"], row["_result"] = snapshot(model.state_dict()), result
        return row

    def final(self, method: str, options: dict, seed: int, trial: dict | None = None) -> dict:
        """One full measurement of a setting; `trial` is the row of a trial already run with it
        on this seed's split, whose weights are measured instead of a new run."""
        if trial is None:
            attacked, model, result = self.attacked(method, options, seed)
        else:
            attacked, model, result = trial, self._fresh(), trial["_result"]
            model.load_state_dict(trial["_state"])
        quantized = self.attack(model, seed, "quantize")
        return {"seed": seed, "V_before": self.before[seed],
                **{k: attacked[k] for k in ("V_after_unlearning", "V_after_relearning", "V_worst_after_relearning",
                                            "loss_ratio", "kept_epoch", "stop_reason")},
                "V_after_quantisation": quantized["V"], "V_worst_after_quantisation": quantized["V worst"],
                "seconds_per_fact": result.seconds_per_fact,
                "topics": accuracies(model, self.tokenizer, self.evaluation.topics),
                "forget_all_after_unlearning": evaluate_mcq(model, self.tokenizer, self.evaluation.items).accuracy}

    def run(self) -> dict:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        total = len(s.methods) * (s.trials + 1)
        bar = tqdm(total=total, desc="compare", disable=not self.progress)
        results = {}
        for method in s.methods:
            study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=s.seed))
            study.enqueue_trial(first_trial(method))
            trials, best = [], {}  # best: the first trial with the lowest value, weights included

            def objective(trial):
                bar.set_postfix_str(f"{method}: trial {trial.number + 1}/{s.trials}")
                row = self.trial(method, search_space(trial, method))
                if not best or row["V_after_relearning"] < best["V_after_relearning"]:
                    best.clear()
                    best.update(row)
                trials.append({k: v for k, v in row.items() if not k.startswith("_")})  # the weights only for the best
                bar.update(1)
                return row["V_after_relearning"]

            study.optimize(objective, n_trials=s.trials)
            runs = []
            for seed in range(s.seeds):
                bar.set_postfix_str(f"{method}: best setting, seed {seed}")
                runs.append(self.final(method, best["options"], seed, trial=best if seed == 0 else None))
            bar.update(1)
            results[method] = {"trials": trials, "best": best["overrides"], "runs": runs,
                               "summary": summarise(runs)}
        bar.close()
        self._fresh()
        chance = statistics.fmean(1 / len(item.choices) for item in self.evaluation.items)
        return {"settings": dataclasses.asdict(s), "n_facts": len(self.evaluation.items), "chance": chance,
                "V_size": len(self.splits[0][1]), "topics_before": self.topics_before, "methods": results}


# ---------------------------------------------------------------- statistics and output
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t confidence interval); the half-width is nan for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    df = len(values) - 1
    t = T_975[max(k for k in T_975 if k <= df)]  # the next tabulated df below: a slightly wider interval
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


SUMMARY_KEYS = ("V_before", "V_after_unlearning", "V_after_relearning", "V_after_quantisation", "loss_ratio",
                "seconds_per_fact")


def summarise(runs: list[dict]) -> dict:
    out = {key: mean_ci([r[key] for r in runs]) for key in SUMMARY_KEYS}
    topics = runs[0]["topics"]
    out["topics"] = {t: mean_ci([r["topics"][t] for r in runs]) for t in topics}
    return out


def _cell(value: tuple[float, float], digits: int = 3) -> str:
    mean, half = value
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def drops(result: dict) -> dict[str, float]:
    """Per method: V accuracy before minus V accuracy after relearning (mean over seeds)."""
    return {m: r["summary"]["V_before"][0] - r["summary"]["V_after_relearning"][0]
            for m, r in result["methods"].items()}


def markdown(result: dict) -> str:
    methods = result["methods"]
    topics = list(result["topics_before"])
    settings = result["settings"]
    header = ["method", "V before", "V after unlearning", "V after relearning",
              f"V after {settings['attacks']['quantize_bits']}-bit", "loss ratio",
              "s / fact"] + [f"{t} (Δ)" for t in topics] + ["best setting"]
    rows = []
    for name, r in methods.items():
        s = r["summary"]
        rows.append([name] + [_cell(s[k]) for k in SUMMARY_KEYS[:4]] + [_cell(s["loss_ratio"], 4),
                                                                        _cell(s["seconds_per_fact"], 2)]
                    + [f"{s['topics'][t][0] - result['topics_before'][t]:+.3f}" for t in topics]
                    + [" ".join(f"`{o}`" for o in r["best"])])
    lines = [markdown_table(header, rows), ""]
    gained = drops(result)
    if "cir" in gained and len(gained) > 1:
        best_other = max((v, m) for m, v in gained.items() if m != "cir")
        ratio = (f"CIR / best baseline ({best_other[1]}) = {gained['cir'] / best_other[0]:.2f}x" if best_other[0] > 0
                 else "no baseline keeps any drop through relearning, so there is no ratio")
        lines.append("- drop in V accuracy that survives relearning (before - after relearning): "
                     + ", ".join(f"{m} {v:+.3f}" for m, v in gained.items()) + f"; {ratio}")
    lines += [
        f"- {result['n_facts']} forget questions; V = {result['V_size']} held-out questions the relearning attack "
        f"(Adam, lr {settings['attacks']['relearn_lr']}, {settings['attacks']['relearn_epochs']} epochs on the MLPs, trained on T) never "
        f"sees; relearning reports its best epoch; chance is {result['chance']:.2f}",
        f"- every run stopped by the same budget: held-out general-text loss ratio <= {settings['budget']} "
        f"(rolled back to the last epoch within it), at most {settings['max_epochs']} epochs",
        f"- search: {settings['trials']} optuna (TPE, seed {settings['seed']}) trials per method over the step size "
        f"(CIR also over its forget loss), the first at the middle of the method's range, minimising V after "
        f"relearning on seed 0's split; then {settings['seeds']} seed(s) of the best setting (mean ± 95% t-interval "
        f"when more than one). Seed 0's row is the best trial itself, chosen on that same split, so it is an "
        f"optimistic estimate; seeds 1 and up draw new splits",
        "- other topics: change in accuracy after unlearning (before: "
        + ", ".join(f"{t} {a:.3f}" for t, a in result["topics_before"].items()) + ")",
    ]
    return "\n".join(lines)


def plot(result: dict, out: Path) -> list[str]:
    from cir.report import pyplot, save_figure

    plt = pyplot()
    written = []
    methods = list(result["methods"])
    stages = ["V_before", "V_after_unlearning", "V_after_relearning", "V_after_quantisation"]
    fig, ax = plt.subplots(figsize=(1.6 * len(methods) + 3, 4))
    width = 0.8 / len(stages)
    for i, stage in enumerate(stages):
        means = [result["methods"][m]["summary"][stage][0] for m in methods]
        errors = [0 if math.isnan(h) else h for h in (result["methods"][m]["summary"][stage][1] for m in methods)]
        ax.bar([j + i * width for j in range(len(methods))], means, width, yerr=errors,
               label=stage.replace("V_", "").replace("_", " "))
    ax.axhline(0.25, color="grey", linestyle=":", label="chance")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(methods))], methods, rotation=20)
    ax.set_ylabel("accuracy on V")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, out / "accuracy.png", dpi=120)
    written.append("accuracy.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    for m in methods:
        trials = result["methods"][m]["trials"]
        ax.scatter([t["loss_ratio"] for t in trials], [t["V_after_relearning"] for t in trials], label=m)
    ax.axvline(result["settings"]["budget"], color="grey", linestyle=":", label="budget")
    ax.set_xlabel("held-out loss ratio (kept weights)")
    ax.set_ylabel("V accuracy after relearning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "trials.png", dpi=120)
    written.append("trials.png")
    return written


def write(result: dict, out: Path, command: str) -> None:
    (out / "compare.json").write_text(json.dumps(result | {"command": command}, indent=2))
    plots = plot(result, out)
    text = [f"# Comparison at a loss-ratio budget of {result['settings']['budget']}", "", "```", command, "```", "",
            markdown(result), ""] + [f"![{p}]({p})" for p in plots]
    (out / "compare.md").write_text("\n".join(text) + "\n")
