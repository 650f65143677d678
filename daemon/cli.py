"""``odar``: the command line. Each subcommand lives in its own module, imported on use.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from odar import __version__
from odar.errors import OdarError

#: (words, module, one-line help)
COMMANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("run",), "odar.service", "run the daemon (what systemd starts)"),
    (
        ("demo",),
        "odar.harness.demo",
        "a scripted collect/train/infer session on the emulated wearable",
    ),
    (("bench", "sensor"), "odar.harness.bench.sensor", "FIFO driver vs a per-register poller"),
    (
        ("bench", "fewshot"),
        "odar.harness.bench.fewshot",
        "personalisation accuracy from 5 windows a class",
    ),
    (
        ("bench", "daemon"),
        "odar.harness.bench.daemon",
        "latency, CPU, memory and start-up of the daemon",
    ),
    (
        ("bench", "soak"),
        "odar.harness.bench.soak",
        "hours of collect, train and infer: memory, threads, fds, store and journal per hour",
    ),
)

EX_CONFIG = 78


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Every command, with the arguments of the one *argv* names: only that command's module is
    imported, so ``odar run`` loads nothing of the demo's or the benches'."""
    parser = argparse.ArgumentParser(prog="odar", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"odar {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    named = [word for word in argv if not word.startswith("-")]
    for words, module, help_text in COMMANDS:
        # The package below odar (odar.harness for the demo and benches), not the module: that
        # would import its parents.
        if importlib.util.find_spec(".".join(module.split(".")[:2])) is None:
            continue  # not part of this build
        if len(words) == 1:
            sub = top.add_parser(words[0], help=help_text)
        else:
            if words[0] not in groups:
                group = top.add_parser(words[0], help=f"{words[0]} subcommands")
                groups[words[0]] = group.add_subparsers(
                    dest=f"{words[0]}_command", metavar="WHAT", required=True
                )
            sub = groups[words[0]].add_parser(words[1], help=help_text)
        sub.set_defaults(_module=module)
        if tuple(named[: len(words)]) == words:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args))
    except KeyboardInterrupt:
        return 130
    except OdarError as error:
        print(f"odar: {error}", file=sys.stderr)
        return EX_CONFIG if isinstance(error, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
