"""The shared loop's configuration: RunConfig (epochs, budgets, batches, seeds), and the
options of a run (the loop's and the method's) checked against their fields' types."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

from cir.errors import InputError, OptionError, OptionTypeError
from cir.fields import check_fields, typed_value
from cir.methods import get_method, method_names


ANSWER_TOKENS = ("all", "first", "with_name")


@dataclass
class RunConfig:
    """Options of the shared loop. Method options live in the method's own config."""

    method: str = "cir"
    seed: int = 0
    max_epochs: int = 6
    disruption: str = "loss_ratio"  # loss_ratio: held-out loss / original; kl: KL(original || model) per token
    budget: float = 1.001  # stop once disruption exceeds this (paper: loss ratio 1.001)
    batch_size: int = 32  # forget sentences per step
    retain_batch_size: int = 16
    max_length: int = 64
    eval_forget: bool = True  # forget accuracy every epoch
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1/3 more compute
    phrasings: int = 4  # training phrasings of each fact per epoch, drawn with the seed (0 = the whole bank)
    # collateral budget: the largest accuracy drop over the retain fact sets (other knowledge as
    # the model is asked it) that a kept epoch may have; watched only when retain sets are given.
    # None: one question of the smallest watched set (one_question), resolved once the sets are known
    collateral_budget: float | None = 0.05  # one question of a 24-question watched half
    # sentences of other forget facts before each training text (0 = none): forgetting trained
    # where context primes the answer, as in a k-shot prompt (never the probes' wording)
    context: int = 0
    # answer tokens the losses and answer positions read: all, or first: only each answer's
    # first token, the prediction that recalls the fact (the rest of a multi-token answer is
    # spelling, which an update can break without removing the fact), or with_name: all, and the
    # tokens that continue the fact's subject (a name's second and later tokens), so that a
    # forgotten person's name is unlearnt with the answers; the retain facts that CIR's
    # retain-aware collapse reads keep all their answer tokens
    answer_tokens: str = "all"
    # weights in bfloat16 or float16: take the measurements the stop rule reads (text loss, forget
    # accuracy, watched topics) with the weights cast to float32 for the measurement, which
    # holds twice the weights' memory meanwhile; bfloat16's rounding of the logits alone moves a
    # text loss by about as much as the 0.1% budget
    measure_float32: bool = True

    def __post_init__(self):
        check_fields(self)
        if self.disruption not in ("loss_ratio", "kl"):
            raise OptionError(f"disruption must be loss_ratio or kl, got '{self.disruption}'")
        for name in ("max_epochs", "batch_size", "retain_batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            raise OptionError(f"seed must be an integer in [0, 2**63), got {self.seed}")
        if self.budget <= 0:
            raise OptionError(f"budget must be > 0, got {self.budget}")
        if self.collateral_budget is not None and self.collateral_budget < 0:
            raise OptionError("collateral_budget must be >= 0")
        if self.phrasings < 0:
            raise OptionError("phrasings must be >= 0")
        if self.context < 0:
            raise OptionError("context must be >= 0")
        if self.answer_tokens not in ANSWER_TOKENS:
            raise OptionError(f"answer_tokens must be {', '.join(ANSWER_TOKENS[:-1])} or {ANSWER_TOKENS[-1]}, "
                              f"got '{self.answer_tokens}'")


# ---------------------------------------------------------------- configuration
def _coerce(cls, values: dict, where: str, origins: dict | None = None) -> object:
    """`cls(**values)`, every value checked against its field's annotation first; errors name where the
    option came from (`origins`: option -> file or flag; `where` otherwise)."""
    origins = origins or {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__} (known: {', '.join(sorted(names))})",
                         path=origins.get(unknown[0], where))
    hints = typing.get_type_hints(cls)
    typed = {}
    for name, value in values.items():
        try:
            typed[name] = typed_value(value, hints[name])
        except ValueError as error:
            raise InputError(f"{name} {error}, got {value!r}", path=origins.get(name, where)) from None
    try:
        return cls(**typed)
    except (TypeError, ValueError) as error:  # the range checks of __post_init__, which name the option first
        raise InputError(str(error), path=origins.get(str(error).split(" ", 1)[0], where)) from None


def make_configs(method: str | None = None, config=None, options: dict | None = None, *,
                 loop: RunConfig | None = None, origins: dict | None = None, where: str = "options"):
    """(RunConfig, the method's config) for `method` (default: `loop`'s, else cir). `options`:
    values by name, each a loop option (a RunConfig field), one of the method's, or
    `METHOD.name` (the method's only); they override `loop` and `config`, the method's dataclass
    (each by default its defaults). Every value is checked against its field's type; errors
    name where it came from (`origins`: name -> file or flag; `where` otherwise)."""
    origins = origins or {}
    if loop is not None and not isinstance(loop, RunConfig):
        raise OptionTypeError(f"loop must be a RunConfig, got {type(loop).__name__} (a method's config goes in config=)")
    name = method if method is not None else loop.method if loop is not None else RunConfig.method
    if isinstance(name, str) and not name.strip():
        raise InputError(f"empty method name (known: {', '.join(method_names())})", path=origins.get("method", where))
    if name not in method_names():
        raise InputError(f"unknown method '{name}' (known: {', '.join(method_names())})")
    method_cls = get_method(name)
    if config is not None and not isinstance(config, method_cls.Config):
        raise InputError(f"config is a {type(config).__name__}, not the {method_cls.Config.__name__} of method {name}")
    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - {"method"}
    method_fields = {f.name for f in dataclasses.fields(method_cls.Config)}
    run_values = (dataclasses.asdict(loop) if loop is not None else {}) | {"method": name}
    method_values = dataclasses.asdict(config) if config is not None else {}
    for key, value in (options or {}).items():
        if key.startswith(name + "."):
            method_values[key[len(name) + 1:]] = value
        elif key in run_fields:
            run_values[key] = value
        elif key in method_fields:
            method_values[key] = value
        else:
            raise InputError(f"unknown option '{key}' (loop: {', '.join(sorted(run_fields))}; "
                             f"{name}: {', '.join(sorted(method_fields))})", path=origins.get(key, where))
    return (_coerce(RunConfig, run_values, where, origins),
            _coerce(method_cls.Config, method_values, where, origins))


def config_dict(run: RunConfig, method_config) -> dict:
    return dataclasses.asdict(run) | {run.method: dataclasses.asdict(method_config)}


def fsdp_limits(run: RunConfig, method_config) -> None:
    """Refuse, before anything is loaded, what does not run with sharded weights."""
    if run.disruption == "kl":
        raise InputError("disruption=kl keeps a second, unsharded copy of the model: use loss_ratio with --fsdp")
    if getattr(method_config, "gu", False):
        raise InputError("gu=true flattens whole gradients across modules: not available with --fsdp")
    if not get_method(run.method).shardable:
        raise InputError(f"method {run.method} keeps an unsharded copy of the model: not available with --fsdp")
