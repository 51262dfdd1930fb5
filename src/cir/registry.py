"""Name -> class tables that refuse duplicate names (methods, forget losses)."""

from __future__ import annotations


def registrar(table: dict, kind: str, attribute: str = "name"):
    """A decorator factory: `@register("name")` stores the class in `table` and sets its `attribute`
    (`cls.name`) to the name."""

    def register(name: str):
        def wrap(cls):
            if name in table:
                raise ValueError(f"{kind} '{name}' registered twice")
            setattr(cls, attribute, name)
            table[name] = cls
            return cls

        return wrap

    return register
