"""Training: mesh, sharding rules (and, later, loss, optimizer, step, loop, checkpoints)."""
