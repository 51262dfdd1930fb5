"""Reading user files line by line, with errors that name the file and line."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from cir.errors import InputError


def read_lines(path: str) -> list[str]:
    """The file's lines as text; a missing, unreadable or non-UTF-8 file is an InputError."""
    if not str(path).strip():
        raise InputError("empty file name")
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=path)
    if p.is_dir():
        raise InputError("is a directory, expected a file", path=path)
    try:
        raw = p.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read file ({error.strerror})", path=path) from None
    raw = raw.removeprefix(codecs.BOM_UTF8)  # as some editors on Windows write
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(f"bytes that are not UTF-8 (byte {error.start})", path=path, line=line) from None
    # split on line feeds only: U+2028, U+2029 and U+0085, which splitlines() also breaks at, are
    # characters of a document (and legal raw in a JSON string)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not any(line.strip() for line in lines):
        raise InputError("empty file", path=path)
    return lines


def read_jsonl(path: str) -> list[tuple[int, dict]]:
    """`(line number, object)` for every non-blank line of a JSONL file."""
    records = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"malformed JSON ({error.msg} at column {error.colno})", path=path, line=number) from None
        if not isinstance(record, dict):
            raise InputError(f"expected a JSON object, got {type(record).__name__}", path=path, line=number)
        if "\\u" in line:  # only a \u escape can make a lone surrogate, which no tokenizer takes
            try:
                json.dumps(record, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as error:
                raise InputError(f"lone surrogate {ascii(error.object[error.start])} (a \\u escape that is "
                                 "not a character)", path=path, line=number) from None
        records.append((number, record))
    return records


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf:NAME[:CONFIG][:SPLIT]` -> (name, config, split)."""
    parts = spec[3:].split(":")
    if not parts[0] or len(parts) > 3:
        raise InputError(f"bad data set spec '{spec}': expected hf:NAME[:CONFIG][:SPLIT]")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "test"
    return name, config, split


def load_hf_rows(spec: str) -> list[dict]:
    """Rows of a Hugging Face data set, with a clear error when it cannot be fetched."""
    name, config, split = parse_hf_spec(spec)
    try:
        import datasets

        rows = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # datasets raises many types for offline / missing
        raise InputError(
            f"cannot load data set '{spec}' ({type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''});"
            " offline machines need a local file"
        ) from None
    return [dict(row) for row in rows]
