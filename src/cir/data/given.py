"""What the Python API takes as a fact set or a text corpus, as the command line takes it: the
questions or texts themselves, or a spec (a file as a str or a Path, a topic, hf:...), read here.
Anything else is an OptionTypeError (an InputError and a TypeError) naming the argument; an empty
set is an InputError."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cir.data.mcq import MCQ, load_facts
from cir.data.text import load_texts
from cir.errors import InputError, OptionTypeError


def is_spec(value) -> bool:
    """Whether `value` names a file or data set (a str or a path)."""
    return isinstance(value, (str, os.PathLike))


def _kind(value) -> str:
    if isinstance(value, (list, tuple)) and value:
        return f"a {type(value).__name__} of {type(value[0]).__name__}"
    return type(value).__name__


def questions(value, name: str) -> list[MCQ]:
    """The questions `value` gives: a list of MCQ, or one spec or a list of specs (read)."""
    if is_spec(value):
        return load_facts(value)
    if isinstance(value, Sequence):
        items = list(value)
        if not items:
            raise InputError(f"{name}: no questions")
        if all(isinstance(item, MCQ) for item in items):
            return items
        if all(is_spec(item) for item in items):
            return load_facts(items)
    raise OptionTypeError(f"{name} must be questions (a list of MCQ) or fact set specs (a file, a topic, hf:...), "
                    f"got {_kind(value)}")


def texts(value, name: str) -> list[str]:
    """The documents `value` gives: a list of str, or a corpus spec (read)."""
    if is_spec(value):
        return load_texts(value)
    if isinstance(value, Sequence) and all(isinstance(text, str) for text in value):
        if not any(text.strip() for text in value):
            raise InputError(f"{name}: no text")
        return value
    raise OptionTypeError(f"{name} must be texts (a list of str) or a corpus spec (a .txt or JSONL file, hf:...), "
                    f"got {_kind(value)}")


def named(value, name: str, read) -> dict:
    """`value` as {name: set}, each set read by `read` (questions or texts): a mapping's values,
    or one set under its spec (or under `name`); None is nothing."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {key: read(item, f"{name}[{key!r}]") for key, item in value.items()}
    return {os.fspath(value) if is_spec(value) else name: read(value, name)}


def optional_texts(value, name: str) -> list[str] | None:
    """`texts`, with None (sampled from the model) left as it is."""
    return None if value is None else texts(value, name)
