"""list the built-in fact sets"""

from __future__ import annotations


def add_arguments(parser) -> None:
    pass


def run(args) -> None:
    from cir.data import topic_sets

    for topic, items in topic_sets().items():
        print(f"{topic:12s} {len(items):4d} questions  (builtin:{topic})")
