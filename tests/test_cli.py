"""The CLI shell: help, and user errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from propensity.cli.main import COMMANDS, main


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "propensity.cli", "--help"],
                         capture_output=True, text=True, check=True)
    for name in COMMANDS:
        assert name in out.stdout


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "No such command" in capsys.readouterr().err
