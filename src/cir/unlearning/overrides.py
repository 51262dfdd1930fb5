"""Options from files and the command line: a YAML file of options and `--set key=value` items
over the defaults of RunConfig and the method's config (the command line and bench scripts
read them here)."""

from __future__ import annotations

import yaml

from cir.data._io import read_lines
from cir.errors import InputError
from cir.unlearning.run_config import RunConfig, make_configs


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
