"""Training: optimizer, mesh and sharding, train step, checkpoints, the loop."""
