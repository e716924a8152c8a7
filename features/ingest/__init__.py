"""Reading raw event and user files, the timestamp rule, and row-level validation and quarantine."""
