"""Training: the joint loss, the optimizer, the sharded train step, inputs, metrics logs, the
staged loop with checkpoints and preemption, presets and the memory estimate."""
