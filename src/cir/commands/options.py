"""Options that several commands take, each declared once, and their reading into the
library's typed objects: `--set key=value` and `--config FILE.yaml` are read here only."""

from __future__ import annotations

import argparse

import yaml

from cir.errors import InputError
from cir.models import DEFAULT_MODEL

OPTIONS = {
    "method": dict(default=None, help="registered method (cir methods lists them); default cir"),
    "config": dict(help="YAML file of options"),
    "set": dict(action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                help="override one option, e.g. --set max_epochs=5 --set cir.unlearning_rate=1.0"),
    "seed": dict(type=int, default=None),
    "out": dict(required=True, help="run directory to write (refused if not empty)"),
    "overwrite": dict(action="store_true", help="replace a non-empty --out"),
    "quiet": dict(action="store_true", help="no progress bar, and no line naming each long step (cir: ...)"),
    "record": dict(metavar="DIR", help="run directory whose attacks.json keeps this result (cir report)"),
    "json": dict(action="store_true", help="print one JSON object"),
    "fsdp": dict(action="store_true", help="under a launcher, shard the weights across the processes with FSDP2 "
                                           "(also on with `accelerate launch --use_fsdp`)"),
}


def add_options(parser: argparse.ArgumentParser, *names: str, **changes: dict) -> None:
    """Add the shared options `names` (keys of OPTIONS) to `parser`; `changes` replaces some of
    an option's settings for this command, e.g. `seed={"default": 0}`."""
    for name in names:
        parser.add_argument(f"--{name}", **(OPTIONS[name] | changes.get(name, {})))


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"alias ({DEFAULT_MODEL}), model directory (also one written by cir), or hub id")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weights and compute (bfloat16/float16 halve the memory; CIR's statistics stay float32)")


def load(args):
    """The model on this process's device (under a launcher the main process loads first: it
    may convert the bundled model into the cache the others then read)."""
    import torch
    from transformers.utils import logging as hf_logging

    from cir import distributed
    from cir.models import load_model

    hf_logging.disable_progress_bar()  # our own bars say what is happening
    with distributed.main_first():
        return load_model(args.model, trust_remote_code=args.trust_remote_code,
                          dtype=getattr(torch, args.dtype), device=distributed.device())


def fsdp(args) -> bool:
    """Whether FSDP is asked for (refused without a launcher: checked before anything loads)."""
    from cir import distributed

    return distributed.fsdp_requested(getattr(args, "fsdp", False))


def max_choices(fmt: str) -> int | None:
    """The most choices a question may have in prompt format `fmt` (letters: A to Z)."""
    return 26 if fmt == "letters" else None


def parse_overrides(overrides: list[str]) -> list[tuple[str, object]]:
    """`--set key=value` items as (key, value) pairs, each value read as YAML (a number, true, a list)."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise InputError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            pairs.append((key, yaml.safe_load(raw)))
        except yaml.YAMLError:
            raise InputError(f"--set: cannot read the value of {key} ({raw!r})") from None
    return pairs


def read_yaml(path: str) -> dict:
    from cir.data._io import read_lines

    try:
        loaded = yaml.safe_load("\n".join(read_lines(path))) or {}
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        raise InputError(f"malformed YAML ({getattr(error, 'problem', error)})", path=path,
                         line=None if line is None else line + 1) from None
    if not isinstance(loaded, dict):
        raise InputError("expected a mapping of options", path=path)
    return loaded


def build_configs(config_file: str | None = None, overrides: list[str] = (), method: str | None = None,
                  seed: int | None = None, base: dict | None = None):
    """(RunConfig, method config) from defaults < `base` < YAML file < `--set key=value` < explicit
    flags. `base`: a command's or a benchmark's own defaults, loop options by name and method
    options as `METHOD.key` (those of other methods unused).

    YAML: loop options at the top level, method options under a key named after the method.
    Overrides: `key=value` for a loop option, `METHOD.key=value` (or a bare key) for the method's.
    """
    from cir.run_config import RunConfig, make_configs

    loaded = read_yaml(config_file) if config_file else {}
    later = [(key, value, "--set") for key, value in parse_overrides(overrides)]
    name, origin = loaded.get("method", RunConfig.method), config_file  # the method: the last of these
    for key, value, where in later:
        if key == "method":
            name, origin = value, where
    if method is not None:
        name, origin = method, "--method"
    options = {key: value for key, value in (base or {}).items() if "." not in key or key.startswith(f"{name}.")}
    options |= {key: value for key, value in loaded.items() if not isinstance(value, dict) and key != "method"}
    section = loaded.get(name) if isinstance(name, str) and isinstance(loaded.get(name), dict) else {}
    options |= {f"{name}.{key}": value for key, value in section.items()}
    origins = {key.removeprefix(f"{name}."): config_file or "the benchmark's defaults" for key in options}
    origins |= {"method": origin or "--set"}
    later = [setting for setting in later if setting[0] != "method"]
    for key, value, origin in later + ([("seed", seed, "--seed")] if seed is not None else []):
        options.pop(key, None)  # moved to the end: the later setting wins
        options[key] = value
        origins[key.removeprefix(f"{name}.")] = origin
    return make_configs(name, options=options, origins=origins, where=config_file or "--set")


def run_configs(args, base: dict | None = None):
    """The typed configs of a command's --config, --set, --method and --seed (over `base`)."""
    return build_configs(args.config, args.overrides, args.method, args.seed, base)
