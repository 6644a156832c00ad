"""``runbooks localnet|build|bench|slack-handler`` pass every argument on, options first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def runbooks(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runbooks.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("door", "usage"),
    [("localnet", "usage: python -m localnet"), ("build", "usage: python -m programs.toolchain")],
)
def test_help_reaches_the_door(door: str, usage: str) -> None:
    done = runbooks(door, "--help")
    assert done.returncode == 0, done.stderr
    assert usage in done.stdout


def test_an_option_reaches_the_door_and_its_error_names_it() -> None:
    done = runbooks("localnet", "--port", "99999")
    assert done.returncode == 2
    assert "argument --port: 99999 is not a TCP port" in done.stderr
    assert "unrecognized arguments" not in done.stderr
