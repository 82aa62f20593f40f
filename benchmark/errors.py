"""The harness's exceptions: who is to blame decides what happens to the run."""


class BenchmarkError(Exception):
    """A user-facing error: the CLI prints its message on one line, without a traceback."""


class PluginOutputError(Exception):
    """A plugin's network returned something the contract forbids (NaN/inf, a wrong or changing shape)
    or raised during one evaluation condition: that condition is recorded as failed and the run goes on."""


class HarnessBug(AssertionError):
    """An invariant of the harness itself broke: never blamed on the plugin, the run stops."""
