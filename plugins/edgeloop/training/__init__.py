"""The model side of the loop: impulse, features, train/retrain with the quality gate,
the data explorer, versions and deployments (plain functions; see docs/training.md)."""
