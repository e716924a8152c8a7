"""Point-in-time feature snapshots and training datasets, on the local Polars engine or Spark."""
