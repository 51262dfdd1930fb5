"""The exception types for bad input: the CLI prints each as a single line, exit code 2."""


class InputError(Exception):
    """Bad user input (a file, a field, a model spec). The message names where: `path:line: what`."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}: " if line is None else f"{path}:{line}: "
        super().__init__(where + message)


class OptionError(InputError, ValueError):
    """An option out of its range (a config dataclass's field, an argument of the API): an
    InputError, as every bad input is, and the ValueError that Python code expects of it."""


class OptionTypeError(InputError, TypeError):
    """An option or an argument of the API of the wrong type: an InputError, and a TypeError."""


class DivergedError(InputError):
    """Training broke the model: its loss or weights became non-finite, its loss rose past where
    it began, or its weights grew far beyond their norm (a step too large for the model). The
    model is not saved. `reason`: what broke, in words, without the advice around it."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class TeachingFellShort(InputError):
    """The `taught` benchmark's teaching left the model below the recipe's accuracy on the
    invented people (a model that learns too little from the recipe): nothing is cached."""
