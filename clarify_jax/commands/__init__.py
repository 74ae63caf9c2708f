"""One module per `clarify-jax` subcommand: a config dataclass (its docstring and field docs are the
command's help) and `run(config)`. The top layer: commands may import anything below."""
