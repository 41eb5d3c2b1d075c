"""Domain errors. The library raises these; `cli.py` turns them into one-line exits (code 2)."""


class ScentError(Exception):
    """Base class of every error scent-search raises on purpose."""


class ConfigError(ScentError, ValueError):
    """A config, spec or CLI value is invalid. The message names the key (and file) at fault.

    `key`, `message` and `source` are kept apart, so a caller one level up re-keys the error with `at`
    instead of parsing its text.
    """

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")

    def at(self, key: str | None = None, *, prefix: str = "", source: str | None = None) -> "ConfigError":
        """The same message about `prefix + key` (default: this key) in `source` (default: this source)."""
        return ConfigError(prefix + (self.key if key is None else key), self.message, source or self.source)


class DataError(ScentError):
    """An image file or folder cannot be used. The message names the file or folder."""


class StorageError(ScentError):
    """The study storage cannot be reached or used. The message never holds credentials."""


class TrainingFailed(ScentError):
    """A training run stopped early. `reason` is short and machine-readable ('nan', 'oom', ...)."""

    reason = "failed"


class NonFiniteLoss(TrainingFailed):
    reason = "nan"


class OutOfMemory(TrainingFailed):
    """The device ran out of memory during a step (the config does not fit)."""

    reason = "oom"
