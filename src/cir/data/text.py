"""Text corpora: `.txt` (one document per line), JSONL with a `text` field, or `hf:` data sets."""

from __future__ import annotations

from cir.data._io import load_hf_rows, read_jsonl, read_lines
from cir.errors import InputError


def load_texts(spec: str, limit: int | None = None) -> list[str]:
    if spec.startswith("hf:"):
        rows = load_hf_rows(spec)
        if rows and "text" not in rows[0]:
            raise InputError(f"data set '{spec}' has no 'text' column")
        texts = [r["text"] for r in rows if isinstance(r.get("text"), str) and r["text"].strip()]
    elif spec.endswith(".jsonl") or spec.endswith(".json"):
        texts = []
        for line, record in read_jsonl(spec):
            if "text" not in record:
                raise InputError("missing field 'text'", path=spec, line=line)
            if not isinstance(record["text"], str):
                raise InputError(f"field 'text' must be str, got {type(record['text']).__name__}", path=spec, line=line)
            if record["text"].strip():
                texts.append(record["text"])
    else:
        texts = [line for line in read_lines(spec) if line.strip()]
    if not texts:
        raise InputError("no text", path=spec)
    return texts[:limit] if limit else texts
