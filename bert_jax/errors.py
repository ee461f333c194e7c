"""Errors that reach the user as one line and a non-zero exit.

Raise `UserError` (or a subclass) for bad input: a file, record, config key
or checkpoint that is wrong, with the thing named and what would fix it. The
CLI prints `bert-jax COMMAND: error: MESSAGE` and exits with status 2; any
other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: message names the file/record/key and the fix."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work."""


class DataError(UserError, ValueError):
    """A data file (corpus, TFRecord shard, TSV, vocab) that is unusable."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, corrupt or does not match the config."""
