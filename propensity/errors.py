"""Errors a user can fix. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class PropensityError(Exception):
    """Bad input, bad configuration or an unmet precondition, with a message that names the culprit."""


class ConfigError(PropensityError):
    """A configuration file is missing, unreadable or does not match its schema."""


class DataError(PropensityError):
    """An input file is unreadable, lacks a required column, or has too many bad rows."""


class StoreUnavailable(PropensityError):
    """A shared store (the Redis profile store or forget ledger) does not answer; retry later."""
