"""Text corpora: `.txt` (one document per line), JSONL with a `text` field, or `hf:` data sets."""

from __future__ import annotations

import os

from cir.data._io import load_hf_rows, read_jsonl, read_lines
from cir.errors import InputError


class Texts(list):
    """Documents (a list of str) that remember where they were read: `spec`, and the line of
    each (None for a data set's rows), so that a problem found later names the file and line."""

    def __init__(self, texts=(), spec: str | None = None, lines: list[int] | None = None):
        super().__init__(texts)
        self.spec, self.lines = spec, lines


def where(texts, index: int | None = None) -> dict:
    """`path` and `line` for an InputError about `texts` (document `index`), where they are known."""
    if not isinstance(texts, Texts) or texts.spec is None:
        return {}
    line = texts.lines[index] if index is not None and texts.lines is not None else None
    return {"path": texts.spec, "line": line}


def _numbered(spec: str) -> list[tuple[int | None, str]]:
    """(line, document) of every non-blank document of `spec`."""
    if spec.startswith("hf:"):
        rows = load_hf_rows(spec)
        if rows and "text" not in rows[0]:
            raise InputError(f"data set '{spec}' has no 'text' column")
        return [(None, r["text"]) for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
    if spec.endswith(".jsonl") or spec.endswith(".json"):
        numbered = []
        for line, record in read_jsonl(spec):
            if "text" not in record:
                raise InputError("missing field 'text'", path=spec, line=line)
            if not isinstance(record["text"], str):
                raise InputError(f"field 'text' must be str, got {type(record['text']).__name__}", path=spec, line=line)
            if record["text"].strip():
                numbered.append((line, record["text"]))
        return numbered
    return [(line, text) for line, text in enumerate(read_lines(spec), start=1) if text.strip()]


def load_texts(spec: str | os.PathLike, limit: int | None = None) -> Texts:
    spec = os.fspath(spec)
    if not spec.strip():
        raise InputError("empty corpus spec: expected a .txt or JSONL file or hf:NAME")
    numbered = _numbered(spec)[:limit] if limit else _numbered(spec)
    if not numbered:
        raise InputError("no text", path=spec)
    lines = None if spec.startswith("hf:") else [line for line, _ in numbered]
    return Texts([text for _, text in numbered], spec, lines)
