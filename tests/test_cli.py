"""The command line's conventions, checked for every command at once."""

from __future__ import annotations

import pytest
from hiding import without

import kernels

from convbench.cli import main, parser

COMMANDS = sorted(parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_only_real_defaults(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.subprocess
def test_list_says_why_a_backend_is_missing_once_and_how_to_get_the_yardstick():
    done = without(("torch",), "from convbench.cli import main; main(['list'])")
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.strip().startswith("torch "))
    assert "not available here" in line and kernels.YARDSTICK_INSTALL in line and "is unavailable" not in line
