"""The project's own error types: each names the problem and the fix."""


class FedCLError(Exception):
    """Base class of every error fedcl raises on purpose."""


class ConfigError(FedCLError, ValueError):
    """A configuration key has a wrong value or an impossible combination."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config key '{key}' = {value!r} is invalid: {allowed}")


class DataError(FedCLError, OSError):
    """A data file or folder is missing, truncated or corrupt."""


class ClientReplyError(FedCLError, ValueError):
    """A client reply is malformed (NaN, wrong shape, missing record)."""


class RoundError(FedCLError, RuntimeError):
    """Too few clients gave a usable reply in a round, even after the configured retries."""
