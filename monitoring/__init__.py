"""Model monitoring: prediction logs, outcomes, drift, realised and estimated performance, alerts."""
