"""What a comparison holds fixed: its settings (methods, budgets, search, seeds, attacks), each method's
search space, and the questions and texts every method is judged on."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from cir.attacks.grids import GRIDS, AttackConfig
from cir.data.mcq import MCQ
from cir.errors import InputError, OptionError
from cir.fields import check_fields
from cir.evaluation.budgets import one_question
from cir.methods import get_method, method_names
from cir.unlearning.run_config import make_configs


DEFAULT_METHODS = ("cir", "repselect", "npo", "simnpo", "rmu", "circuit_breakers", "gradient_difference")
QUICK_METHODS = ("cir", "npo", "gradient_difference")
DEFAULT_BUDGETS = (0.001, 0.003, 0.01, 0.03)  # rise of the held-out general-text loss: 0.1% ... 3%
# the watched topics' largest accuracy drop beside each budget, by default: at the first, one
# question of the smallest watched quarter (cir.evaluation.budgets.one_question: 0.1 for 11 questions, as 44
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
    # an attack grid (cir.attacks.GRIDS) that each budget's runs on seeds 1..K, and the never-taught
    # model, also meet: their rows then hold the worst attack's V (the search reads the suite only)
    grid: str | None = None

    def __post_init__(self):
        check_fields(self)
        unknown = [m for m in self.methods if m not in method_names()]
        if unknown or not self.methods:
            raise OptionError(f"methods has unknown method(s) {', '.join(unknown) or '(none given)'} "
                             f"(known: {', '.join(method_names())})")
        if len(set(self.methods)) < len(self.methods):
            raise OptionError("methods names a method twice")
        for name in ("trials", "seeds", "max_epochs"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1")
        if self.max_facts is not None and self.max_facts < 4:
            raise OptionError(f"max_facts must be >= 4 (T and V need two questions each), got {self.max_facts}")
        if self.topic_questions is not None and self.topic_questions < 3:
            raise OptionError("topic_questions must be >= 3 (a part watched, a part protected, a part reported)")
        if not self.budgets or any(not 0 < b < 10 for b in self.budgets) or list(self.budgets) != sorted(set(self.budgets)):
            raise OptionError(f"budgets must be rising shares of the text loss, each in (0, 10) (0.001 = 0.1%), "
                             f"got {','.join(map(str, self.budgets))}")
        if self.collateral is not None and len(self.collateral) == 1:
            self.collateral *= len(self.budgets)
        if self.collateral is not None and (len(self.collateral) != len(self.budgets)
                                            or any(not 0 <= c <= 1 for c in self.collateral)
                                            or list(self.collateral) != sorted(self.collateral)):
            raise OptionError(f"collateral must be one value or one per budget ({len(self.budgets)}), each in [0, 1] "
                             f"and not falling, got {','.join(map(str, self.collateral))}")
        shared = sorted({key.split(".")[-1] for key in self.options} & set(SHARED))
        if shared:
            raise OptionError(f"options cannot change {', '.join(shared)} in a comparison (the budgets, epochs and "
                             "seed are the comparison's own settings; the search sets the step)")
        if self.grid is not None and self.grid not in GRIDS:
            raise OptionError(f"grid must be one of {', '.join(GRIDS)}, got '{self.grid}'")
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


def searched_options() -> tuple[str, ...]:
    """Options some method's search sets besides the step (its Config.searched): no default fixes them."""
    return tuple(sorted({name for method in method_names() for name in get_method(method).Config.searched}))


def benchmark_options(benchmark: str | None) -> dict:
    """The options a comparison on `benchmark` fixes for its methods: the benchmark's own defaults
    (cir.benchmarks), less the step and CIR's forget loss, which the search sets."""
    from cir.benchmarks import method_defaults

    return {k: v for k, v in method_defaults(benchmark).items() if k.split(".")[-1] not in SHARED + searched_options()}


def distributions(method: str) -> dict:
    """The search space: the step size on a log scale over the method's range, and each option
    its config searches (CIR: its forget loss) over its choices."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    config = get_method(method).Config
    low, high = config.rate_range
    space = {"unlearning_rate": FloatDistribution(low, high, log=True)}
    space |= {name: CategoricalDistribution(choices) for name, choices in config.searched.items()}
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
    defaults = config()
    params |= {name: getattr(defaults, name) for name in config.searched}
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
