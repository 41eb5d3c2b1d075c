"""Domain errors. The library raises these; `cli.py` turns them into one-line exits (code 2)."""


class ScentError(Exception):
    """Base class of every error scent-search raises on purpose."""


class ConfigError(ScentError, ValueError):
    """A config, spec or CLI value is invalid. The message names the key (and file) at fault."""

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.source = key, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


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
