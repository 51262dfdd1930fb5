"""Options that several commands take, each declared once, and their reading into the
library's typed objects (a YAML file and `--set key=value` through cir.unlearning.overrides)."""

from __future__ import annotations

import argparse

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


def run_configs(args, base: dict | None = None):
    """The typed configs of a command's --config, --set, --method and --seed (over `base`)."""
    from cir.unlearning.overrides import build_configs

    return build_configs(args.config, args.overrides, args.method, args.seed, base)
