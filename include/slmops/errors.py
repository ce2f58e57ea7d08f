"""Exception types shared by every stage.

Each message names the file, parameter or model at fault and says what to do; the CLI
prints the message alone (no traceback) and exits non-zero.
"""


class SlmopsError(Exception):
    """Base class for errors a user can fix from the message alone."""


class ModelError(SlmopsError):
    """A model could not be found, reached, verified or loaded."""
