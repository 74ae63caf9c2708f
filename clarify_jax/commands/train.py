"""`clarify-jax train PRESET [overrides]`: the config is a preset from configs/ (see
train/presets.py) with any field overridden on the command line."""

from __future__ import annotations

import json

import tyro

from clarify_jax.train.config import TrainConfig
from clarify_jax.train.loop import train
from clarify_jax.train.presets import load_presets

TRAIN_DESCRIPTION = """Fine-tune on synthesized dialogues with the joint loss (clarify and code turns
weighted), in stages; LoRA or full; sharded over a data,fsdp,tensor mesh. Pick a preset (from
configs/), then override any field. Writes OUT/checkpoints, OUT/metrics.jsonl, OUT/tensorboard and
OUT/plots/loss.png; SIGTERM saves and stops; --resume continues from the latest checkpoint."""


def parse(args: list[str]) -> TrainConfig:
    return tyro.extras.overridable_config_cli(
        load_presets(), prog="clarify-jax train", args=args, description=TRAIN_DESCRIPTION
    )


def run(config: TrainConfig) -> None:
    print(json.dumps(train(config), indent=2))
