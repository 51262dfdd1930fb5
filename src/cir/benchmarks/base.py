"""What every benchmark is made into (a Setting), and the registry of benchmarks by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cir.data.mcq import MCQ
from cir.errors import InputError


@dataclass
class Setting:
    """A benchmark made concrete on a model."""

    name: str
    model: object
    tokenizer: object
    forget: list[MCQ]
    topics: dict[str, list[MCQ]]  # other knowledge: reported in the tables, its even half watched
    reference: object | None = None  # the never-taught model, where one exists
    nonmembers: list[str] = field(default_factory=list)  # sentences of facts never taught
    notes: dict = field(default_factory=dict)  # what the benchmark records of itself (teaching)
    # (retain, held-out) general text of the unlearning runs where it is not the model's own
    # samples: a taught model's are those of the model before teaching, whose retain half the
    # teaching replayed and whose held-out half nothing trained on (the taught model's own samples
    # repeat the passages it replayed: its loss on them is far below any other text's)
    general: tuple[list[str], list[str]] | None = None
    # makes the retain model (taught everything but F), where one exists: made on first use
    retain_maker: Callable[[], object] | None = None
    _retain: object | None = field(default=None, repr=False)

    def retain(self):
        """The retain model (None where the benchmark has none), made or loaded on first call."""
        if self._retain is None and self.retain_maker is not None:
            self._retain = self.retain_maker()
        return self._retain


BENCHMARKS: dict[str, Callable[..., Setting]] = {}
# each benchmark's own defaults for a method, as `METHOD.option` (under any --config and --set):
# the settings its sweep chose on seeds that do not judge them (docs/sweep.md)
METHOD_DEFAULTS: dict[str, dict] = {}


# the benchmarks whose facts are drawn with a seed (their maker's `seed=`: taught's people,
# subjects' countries), so that judging seeds can have forget sets of their own
DRAWN: set[str] = set()


def register_benchmark(name: str, method_defaults: dict | None = None, drawn: bool = False):
    """Register a benchmark's maker, `maker(model, tokenizer, **options) -> Setting`, under `name`,
    with its own defaults for methods (`METHOD.option`: value); `drawn`: its maker takes `seed=`,
    the draw of its facts. A second maker of one name is refused."""
    def add(maker: Callable[..., Setting]) -> Callable[..., Setting]:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark '{name}' is registered twice")
        BENCHMARKS[name] = maker
        METHOD_DEFAULTS[name] = dict(method_defaults or {})
        if drawn:
            DRAWN.add(name)
        return maker

    return add


def method_defaults(name: str | None) -> dict:
    return dict(METHOD_DEFAULTS.get(name, {})) if name else {}


def benchmark_names() -> list[str]:
    return list(BENCHMARKS)


def check_benchmark(name: str) -> str:
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    return name


def make_setting(name: str, model, tokenizer, **options) -> Setting:
    """The benchmark `name` on `(model, tokenizer)`; `options` go to its maker (a TeachRecipe as
    `recipe=` for taught, `countries=` and `seed=` for subjects)."""
    return BENCHMARKS[check_benchmark(name)](model, tokenizer, **options)
