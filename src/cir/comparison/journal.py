"""The comparison's journal: every search trial and every seed's run, one JSON line each, appended as
it finishes, so an interrupted comparison continues from it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from cir.comparison.settings import CompareSettings, Evaluation
from cir.data.mcq import MCQ
from cir.errors import InputError
from cir.outputs import to_json


# ---------------------------------------------------------------- the journal
class Journal:
    """The records of a comparison as they finish, one JSON line each, in `path`. The first line
    holds what the comparison is (settings, forget questions, model); a journal of another
    comparison is refused. A last line cut short by an interruption is ignored."""

    def __init__(self, path: Path, header: dict):
        self.path, self.records = Path(path), []
        if self.path.exists():
            parsed = read_journal(self.path)
            if parsed[0] != header:
                raise InputError("holds a comparison with other settings, questions or model (use --overwrite to "
                                 "start over)", path=str(self.path))
            self.records = parsed[1:]
            write_journal(self.path, parsed)
        else:
            write_journal(self.path, [header])

    def add(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(to_json(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def find(self, **keys) -> dict | None:
        return next((r for r in self.records if all(r.get(k) == v for k, v in keys.items())), None)


# the fields of each kind of journal record
RECORD_FIELDS = {
    "header": ("settings", "model", "inputs"),
    "trial": ("method", "number", "params", "options", "overrides", "stop_reason", "epochs", "budgets", "seconds"),
    "final": ("method", "number", "seed", "stop_reason", "epochs", "budgets", "seconds"),
    "before": ("seed",),  # and its "row" (or, journalled before rows, "V_before", "V_worst_before", "topics")
    "original": ("seed", "quantize", "row"),
    "never_taught": ("seed", "row"),
}


def _is_record(record, kind: str | None) -> bool:
    """Whether `record` is a journal record (of `kind`, when given; a header only first)."""
    if not isinstance(record, dict) or record.get("kind") not in RECORD_FIELDS:
        return False
    if (kind or record["kind"]) != record["kind"] or (kind is None and record["kind"] == "header"):
        return False
    if record["kind"] == "before" and "row" not in record:
        return all(name in record for name in ("V_before", "V_worst_before", "topics"))
    return all(name in record for name in RECORD_FIELDS[record["kind"]])


def write_journal(path: Path, records: list[dict]) -> None:
    """Replace the journal at `path` with `records` (header first), all at once: a reader sees the
    old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(to_json(r) + "\n" for r in records))
    os.replace(tmp, path)


def read_journal(path: Path) -> list[dict]:
    """A journal's records, up to a line cut short (it and anything after it are done again); a
    line that is not a record of a journal, or a journal without its header, is refused."""
    parsed = []
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        if not raw.strip() and number > 1:
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            record = None
        except json.JSONDecodeError:
            if number > 1:
                break
            record = None
        if not _is_record(record, "header" if number == 1 else None):
            raise InputError("not a journal record (use --overwrite to start over)", path=str(path), line=number)
        parsed.append(record)
    return parsed


def journal_header(model, settings: CompareSettings, evaluation: Evaluation, benchmark: str | None = None) -> dict:
    """What a journal belongs to: the settings, the benchmark, the model, and a digest of the forget
    questions, the kept topics' questions (watched, reported, protected) and the general text, as JSON
    gives them back."""
    import hashlib

    def questions(items: list[MCQ]) -> list:
        return [[item.question, item.choices, item.answer] for item in items]

    digest = hashlib.sha256(json.dumps(
        questions(evaluation.items) + [evaluation.retain_texts, evaluation.heldout_texts]
        + [{name: questions(items) for name, items in sets.items()}
           for sets in (evaluation.watched, evaluation.reported)]
        + ([] if evaluation.protected is None else [{name: questions(items) for name, items in
                                                      evaluation.protected.items()}])).encode()).hexdigest()
    values = dataclasses.asdict(settings)
    if values.get("grid") is None:  # a journal made before grids continues
        values.pop("grid", None)
    header = {"kind": "header", "settings": values,
              "model": str(getattr(model.config, "name_or_path", "")), "inputs": digest[:16]}
    if benchmark is not None:
        header["benchmark"] = benchmark
    return json.loads(to_json(header))


class _Memory:
    """A stand-in journal that keeps its records in memory (the Python API without a directory)."""

    def __init__(self):
        self.records = []

    def add(self, record: dict) -> None:
        self.records.append(record)

    find = Journal.find
