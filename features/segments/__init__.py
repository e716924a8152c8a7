"""The segment stage: engagement scores, journey stages and behavioural clusters."""
