"""The commands of the `cir` command line, one module each (`attack` holds its subcommands).

Every module has a docstring whose first line is the command's help, `add_arguments(parser)`
and `run(args)`; cir.cli lists them, parses and dispatches. A command reads its arguments into
the library's objects (cir.api, cir.commands.options) and prints; the work is the library's.
"""
