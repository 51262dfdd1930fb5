"""Add to a comparison's journal the runs a second process made of some of its methods.

A comparison runs its methods one after the other. On a machine with two cores, a second process
(one thread each) can run some of the methods at the same time: the same `cir compare` command
with `--methods` naming the last few and its own `--out`. Before the main process reaches those
methods, stop it, merge, and run its command again: it continues from the merged journal. The
searches are seeded per method and trial, so the records are the ones the main process would
have written.

    python bench/merge_journals.py runs/compare-subjects/journal.jsonl runs/compare-subjects-b/journal.jsonl

Refused, with nothing written: journals of different comparisons (their headers differ in more
than the methods), methods the main journal does not name, and shared measurements (the
original model's, the never-taught model's) that the two journals hold with different values.
Never run it while the main process is running: that process appends to the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# what identifies a record within a journal, by kind
KEYS = {"trial": ("method", "number"), "final": ("method", "number", "seed"), "before": ("seed",),
        "original": ("seed", "quantize"), "never_taught": ("seed",)}


def key(record: dict) -> tuple:
    return (record["kind"],) + tuple(record.get(k) for k in KEYS.get(record["kind"], ()))


def merged(main: list[dict], other: list[dict]) -> tuple[list[dict], int]:
    """`main`'s records followed by `other`'s that it lacks (its header first); a ValueError
    when they are not of one comparison or disagree on a record both hold."""
    head, extra = dict(main[0]), dict(other[0])
    methods, others = head["settings"]["methods"], extra["settings"]["methods"]
    unknown = [m for m in others if m not in methods]
    if unknown:
        raise ValueError(f"the second journal runs method(s) the main one does not: {', '.join(unknown)}")
    same = {**extra, "settings": {**extra["settings"], "methods": methods}}
    if same != head:
        differ = sorted(k for k in set(head) | set(same) if head.get(k) != same.get(k))
        if "settings" in differ:
            differ.remove("settings")
            differ += [f"settings.{k}" for k in head["settings"] if head["settings"][k] != same["settings"].get(k)]
        raise ValueError(f"not the same comparison: the headers differ in {', '.join(differ)}")
    held = {key(r): r for r in main[1:]}
    added = []
    for record in other[1:]:
        found = held.get(key(record))
        if found is None:
            held[key(record)] = record
            added.append(record)
        elif record["kind"] not in ("trial", "final") and found != record:
            raise ValueError(f"the two journals measured {' '.join(map(str, key(record)))} differently")
    return main + added, len(added)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("main", help="the journal to add to (the process that runs every method)")
    parser.add_argument("other", help="the journal of the process that ran some of them")
    args = parser.parse_args()

    from cir.comparison import read_journal, write_journal
    from cir.errors import InputError

    try:
        records, added = merged(read_journal(Path(args.main)), read_journal(Path(args.other)))
    except (ValueError, InputError) as error:
        sys.exit(f"{args.other}: {error}")
    write_journal(Path(args.main), records)
    print(f"{args.main}: {added} record(s) added from {args.other}")


if __name__ == "__main__":
    main()
