"""Subcommands of the ``slmops`` CLI, one module each (see ``slmops.cli``)."""
