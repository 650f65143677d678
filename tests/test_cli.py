"""The command line as a user meets it: help for every command and option with defaults,
shell completion and the manual page generated from the parser."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from odar.cli import COMMANDS, build_full_parser, main


def every_parser(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, (*path, name))


def test_every_option_of_every_command_has_help():
    missing = [
        (" ".join(path), action.option_strings or action.dest)
        for path, parser in every_parser(build_full_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("words", [words for words, _, _ in COMMANDS], ids=" ".join)
def test_every_command_help_exits_0_with_a_description(words, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: odar {' '.join(words)}")
    # A description paragraph between the usage and the options.
    assert len(out.split("\n\n")) >= 3


def test_defaults_are_shown_and_none_is_not(capsys):
    with pytest.raises(SystemExit):
        main(["selftest", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: /etc/odar/odar.yaml)" in out
    assert "(default: 15.0)" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_the_top_level_help_is_for_a_user(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "odar learns your activities" in out
    assert "subcommand lives in its own module" not in out
    for command in ("run", "status", "watch", "selftest", "samples", "demo", "completion"):
        assert f"\n    {command}" in out


def test_bash_completion_is_generated_from_the_parser(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete" in script and "_shtab_odar" in script
    for word in ("selftest", "--button-timeout", "delete-last", "--status-file"):
        assert word in script


def test_the_manual_page_is_generated_from_the_parser(tmp_path):
    tool = Path(sys.executable).parent / "argparse-manpage"
    if not tool.exists():
        tool = Path(shutil.which("argparse-manpage") or "argparse-manpage")
    page = tmp_path / "odar.1"
    subprocess.run(
        [str(tool), "--module", "odar.cli", "--function", "build_full_parser", "--prog", "odar",
         "--project-name", "odar", "--output", str(page)],
        check=True,
    )  # fmt: skip
    text = page.read_text()
    assert text.startswith(".TH ODAR")
    for word in ("selftest", "samples", "delete\\-last", "button\\-timeout", "status"):
        assert word in text
