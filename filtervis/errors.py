"""Domain errors. Each message says what was wrong and how to fix it; the CLI prints it on one line, exit 2."""


class FiltervisError(Exception):
    """Base class of every error filtervis reports to a user."""

    exit_code = 2


class SpecError(FiltervisError):
    """A flag, filter spec or option value is malformed or out of range."""


class ConfigError(FiltervisError):
    """A TOML config file is missing, unreadable, or has an unknown key or a bad value."""


class ModelError(FiltervisError):
    """A model name, file or factory cannot give a Keras model."""


class WeightsError(FiltervisError):
    """Weights cannot be found, downloaded or loaded."""


class LayerError(FiltervisError):
    """A layer is unknown or cannot be visualized."""


class OutputError(FiltervisError):
    """The output folder cannot be written."""


class Interrupted(FiltervisError):
    """SIGINT or SIGTERM arrived; finished filters are saved. Exit code 128 + the signal number."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
