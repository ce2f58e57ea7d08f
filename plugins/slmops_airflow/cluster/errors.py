"""The cluster launcher's one error type: its message says what to do."""


class ClusterError(RuntimeError):
    """The native cluster could not be started, reached or stopped."""
