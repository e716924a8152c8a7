"""The live profile store: per-user state updated by incoming events, its stores and online evaluation."""
