"""propensity: the shared basics (errors, configuration, paths, redaction) and the command line
(``propensity.cli``)."""
