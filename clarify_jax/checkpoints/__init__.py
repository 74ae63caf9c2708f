"""Every on-disk layout of a model and every way to load one: orbax params checkpoints, the
training run directory (its checkpoints and metadata), and conversion to and from Hugging Face."""
