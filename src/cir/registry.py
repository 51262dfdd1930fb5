"""Name -> class tables that refuse duplicate names (methods, forget losses)."""

from __future__ import annotations


def registrar(table: dict, kind: str):
    """A decorator factory: `@register("name")` stores the class in `table` and sets `cls.name`."""

    def register(name: str):
        def wrap(cls):
            if name in table:
                raise ValueError(f"{kind} '{name}' registered twice")
            cls.name = name
            table[name] = cls
            return cls

        return wrap

    return register
