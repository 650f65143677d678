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

DESCRIPTION = """\
odar learns your activities on the wearable itself: collect a few samples of each class with
the buttons, train, then let the motor tell you when the trigger class is detected. The
service (odar run) is started by systemd; the other commands look at it, check the wiring,
manage the collected samples, or show the emulated demo and the benches."""

EPILOG = """\
Configuration: /etc/odar/odar.yaml (every key documented there). Logs: journalctl -u odar
(fields in /opt/odar/share/doc/operations.md). `odar COMMAND --help` describes a command."""

#: (words, module, one-line help)
COMMANDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("run",), "odar.service", "run the daemon (what systemd starts)"),
    (("samples",), "odar.samples_cli", "list, delete, relabel, export and import samples"),
    (("status",), "odar.status_cli", "what the running daemon is doing (--json for scripts)"),
    (("watch",), "odar.watch", "live loss curve and class probabilities, for an ssh session"),
    (("plot",), "odar.plot", "the last training run's loss curve as an image (needs matplotlib)"),
    (("selftest",), "odar.selftest", "check a freshly wired wearable, part by part"),
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
    (("completion",), "odar.completion", "print a shell completion script (bash, zsh, tcsh)"),
)

EX_CONFIG = 78


def build_parser(
    argv: Sequence[str] = (), *, every_command: bool = False
) -> argparse.ArgumentParser:
    """Every command, with the arguments of the one *argv* names (or of all, *every_command*):
    only that command's module is imported, so ``odar run`` loads nothing of the demo's or the
    benches'."""
    parser = argparse.ArgumentParser(
        prog="odar",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
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
            sub = top.add_parser(words[0], help=help_text, formatter_class=HelpFormatter)
        else:
            if words[0] not in groups:
                group = top.add_parser(
                    words[0], help=f"{words[0]} subcommands", formatter_class=HelpFormatter
                )
                groups[words[0]] = group.add_subparsers(
                    dest=f"{words[0]}_command", metavar="WHAT", required=True
                )
            sub = groups[words[0]].add_parser(
                words[1], help=help_text, formatter_class=HelpFormatter
            )
        sub.set_defaults(_module=module)
        if every_command or tuple(named[: len(words)]) == words:
            imported = importlib.import_module(module)
            sub.description = _description(imported, help_text)
            imported.add_arguments(sub)
    return parser


def build_full_parser() -> argparse.ArgumentParser:
    """The parser with every command's arguments: for the man page and shell completion."""
    return build_parser(every_command=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (where there is one to show); descriptions keep
    their paragraphs."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or action.required:
            return action.help
        return super()._get_help_string(action)


def _description(module: object, fallback: str) -> str:
    """The command module's docstring without its first line's ``odar x``: markup."""
    doc = (getattr(module, "__doc__", None) or "").strip()
    if not doc:
        return fallback
    first, _, rest = doc.partition("\n")
    first = first.split(":", 1)[1].strip() if first.startswith("``odar") and ":" in first else first
    text = (first + "\n" + rest).replace("``", "")
    return text.strip()


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
    except OSError as error:  # a file or device the command was pointed at
        print(f"odar: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
