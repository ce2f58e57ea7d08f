"""Subcommands of the ``slmops`` CLI, one module each (see ``slmops.cli``)."""

import sys


def log_to_stderr(message: str) -> None:
    """Progress for a person at the terminal; stdout stays for results."""
    print(message, file=sys.stderr, flush=True)
