"""Device meshes and logical-axis sharding: below the model, the sampler and the trainer alike."""
