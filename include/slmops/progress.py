"""How library code reports progress without knowing who listens.

Stages take ``log: Log`` (a callable taking one line); the CLI passes a stderr printer,
an Airflow operator its task logger, tests a list's ``append``. The default says nothing.
"""

from collections.abc import Callable

Log = Callable[[str], None]


def no_log(message: str) -> None:
    del message
