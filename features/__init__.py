"""Feature pipeline: the data contract, feature definitions and their batch and online evaluators.

Sub-packages: ``ingest`` (read and validate raw events and users), ``batch`` (point-in-time
snapshots, datasets, local and Spark engines), ``live`` (the live profile store and online
evaluation), ``segments`` (engagement, journey stages, clusters) and ``shop`` (the synthetic shop).
"""
