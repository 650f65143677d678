"""``odar completion SHELL``: the shell completion script for odar, generated from the command
line parser by shtab.

Install for bash: ``odar completion bash | sudo tee /etc/bash_completion.d/odar``; for zsh:
``odar completion zsh > "${fpath[1]}/_odar"``.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "tcsh")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete odar in")


def run(args: argparse.Namespace) -> int:
    import shtab

    from odar.cli import build_full_parser

    print(shtab.complete(build_full_parser(), shell=args.shell), end="")
    return 0
