"""The one error type of the statistics: a bad parameter a user can fix (also a ValueError)."""

from propensity.errors import PropensityError


class StatsInputError(PropensityError, ValueError):
    """A parameter is outside its domain (rate not in 0..1, split not summing to 1, ...)."""
