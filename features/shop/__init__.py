"""The synthetic shop: users, catalogue, clickstream, purchases and the oracle probabilities."""
