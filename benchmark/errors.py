"""One exception type for every error a user can cause and fix."""


class BenchmarkError(Exception):
    """A user-facing error: the CLI prints its message on one line, without a traceback."""
