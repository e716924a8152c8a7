"""The ``propensity`` command line: one thin module per sub-command over the stage functions."""
