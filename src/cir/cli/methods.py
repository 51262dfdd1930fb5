"""list the unlearning methods"""

from __future__ import annotations


def add_arguments(parser) -> None:
    pass


def run(args) -> None:
    from cir.methods import get_method, method_names

    for name in method_names():
        print(f"{name:20s} {get_method(name).reference}")
