"""cir: make a language model forget chosen facts, and attack it to check they are gone.

The command line is a shell over the library (cir.api): one module per command in this package
(`attack` holds its subcommands), each with a docstring whose first line is the command's help,
`add_arguments(parser)` and `run(args)`; this module lists them, parses and dispatches. A command
reads its arguments into the library's objects and prints; the work is the library's.
"""

from __future__ import annotations

import argparse
import sys

from cir import distributed, outputs
from cir.cli import attack, audit, compare, demo, evaluate, methods, mia, report, synth, teach, topics, unlearn
from cir.errors import InputError

# every command, in the order `cir --help` lists them; each module has add_arguments and run
COMMANDS = {
    "eval": evaluate,
    "topics": topics,
    "synth": synth,
    "teach": teach,
    "unlearn": unlearn,
    "methods": methods,
    "demo": demo,
    "compare": compare,
    "attack": attack,
    "audit": audit,
    "mia": mia,
    "report": report,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cir", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        line = command.__doc__.splitlines()[0]  # argparse expands % in a help text, never in a description
        command.add_arguments(sub.add_parser(name, help=line.replace("%", "%%"), description=line))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with outputs.quiet(getattr(args, "quiet", False)):
            COMMANDS[args.command].run(args)
    except InputError as error:
        print(f"cir: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cir: interrupted", file=sys.stderr)
        return 130
    finally:
        outputs.release_claims()  # the output directory the command claimed at its start
    distributed.shutdown()
    return 0

