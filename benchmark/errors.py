"""One exception type for every error a user can cause and fix."""


class BenchmarkError(Exception):
    """A user-facing error: the CLI prints its message on one line, without a traceback."""


class PluginOutputError(Exception):
    """A plugin's network returned something the contract forbids (NaN/inf, a wrong or changing shape)
    or raised during one evaluation condition: that condition is recorded as failed and the run goes on."""
