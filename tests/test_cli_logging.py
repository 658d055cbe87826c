"""``STREAMBIND_LOG_LEVEL`` sets the command line's logging level."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from streambind.cli import LOG_LEVEL_ENV, log_level


@pytest.mark.parametrize(
    ("value", "level"),
    [(None, logging.INFO), ("", logging.INFO), ("debug", logging.DEBUG),
     (" WARNING ", logging.WARNING), ("Error", logging.ERROR), ("loud", None), ("5", None)],
)
def test_log_level_names(value, level):
    assert log_level(value) == level


SCRIPT = (
    "import logging\n"
    "from streambind import cli\n"
    "cli.main(['--help'])\n"
    "logging.getLogger('probe').info('INFO-LINE')\n"
    "logging.getLogger('probe').error('ERROR-LINE')\n"
)


def _stderr(value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != LOG_LEVEL_ENV}
    if value is not None:
        env[LOG_LEVEL_ENV] = value
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return done.stderr


def test_the_command_line_logs_at_the_level_the_environment_names():
    default = _stderr(None)
    assert "INFO-LINE" in default and "ERROR-LINE" in default
    quiet = _stderr("ERROR")
    assert "INFO-LINE" not in quiet and "ERROR-LINE" in quiet
    bad = _stderr("loud")
    assert "names no logging level; using INFO" in bad and "INFO-LINE" in bad
