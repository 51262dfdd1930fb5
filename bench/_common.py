"""Shared by the bench scripts: each writes its own section of docs/benchmarks.md."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path


BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    from cir.machine import describe

    return describe()


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md, with the command that made it."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), BENCHMARKS.parent.parent)
    command = "python " + " ".join(shlex.quote(a) for a in [script] + sys.argv[1:])
    block = (f"<!-- {name}:start -->\n{body.rstrip()}\n\nMeasured with `{command}` on {machine()}.\n"
             f"<!-- {name}:end -->")
    default = "# Benchmarks\n\nEach section below is written by the script named in it.\n"
    replace_section(BENCHMARKS, name, block, default)
    print(block)


def replace_section(path: Path, name: str, block: str, default: str = "") -> None:
    """Put `block` (which starts with `<!-- name:start -->` and ends with `<!-- name:end -->`) in
    place of that section of the file `path`, or after its end when it has none."""
    text = path.read_text() if path.exists() else default
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
