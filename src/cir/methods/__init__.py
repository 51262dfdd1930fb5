"""Unlearning methods, registered by name. Adding one = one file here + `@register`."""

from __future__ import annotations

import importlib
import pkgutil

from cir.registry import registrar

METHODS: dict[str, type] = {}
register = registrar(METHODS, "method")


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def get_method(name: str) -> type:
    _import_all()
    if name not in METHODS:
        raise KeyError(name)
    return METHODS[name]


def method_names() -> list[str]:
    _import_all()
    return list(METHODS)
