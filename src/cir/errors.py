"""The exception types for bad input: the CLI prints each as a single line, exit code 2."""


class InputError(Exception):
    """Bad user input (a file, a field, a model spec). The message names where: `path:line: what`."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class DivergedError(InputError):
    """Training made the loss or the weights non-finite (a step too large for the model): the
    model is not saved."""


class TeachingFellShort(InputError):
    """The `taught` benchmark's teaching left the model below the recipe's accuracy on the
    invented people (a model that learns too little from the recipe): nothing is cached."""
