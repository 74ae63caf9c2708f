"""Tiny models on a laptop CPU: the demo's two stages, in a few minutes."""

import tyro

from clarify_jax.train.config import DataConfig, LoraConfig, OptimizerConfig, Stage, TrainConfig

PRESETS = {
    "tiny-cpu": (
        "Full fine-tuning of a tiny model on the CPU: a clarification stage, then a joint stage.",
        TrainConfig(
            model=tyro.MISSING,
            out=tyro.MISSING,
            stages=(
                Stage(
                    name="clarify",
                    steps=60,
                    mixture="",
                    clarify_weight=1.0,
                    code_weight=0.5,
                    learning_rate=3e-3,
                    warmup_steps=6,
                ),
                Stage(
                    name="joint",
                    steps=60,
                    clarify_weight=1.0,
                    code_weight=1.0,
                    learning_rate=1e-3,
                    warmup_steps=0,
                ),
            ),
            data=DataConfig(seq_len=512, batch_size=8),
            optimizer=OptimizerConfig(weight_decay=0.01),
            param_dtype="float32",
            compute_dtype="float32",
            eval_every=30,
            checkpoint_every=30,
            log_every=5,
        ),
    ),
    "tiny-cpu-lora": (
        "LoRA (rank 8 on q/k/v/o) on a tiny model on the CPU, one stage.",
        TrainConfig(
            model=tyro.MISSING,
            out=tyro.MISSING,
            stages=(Stage(name="clarify", steps=60, learning_rate=3e-3, warmup_steps=6),),
            data=DataConfig(seq_len=512, batch_size=8),
            lora=LoraConfig(rank=8, alpha=16.0),
            param_dtype="float32",
            compute_dtype="float32",
            eval_every=30,
            checkpoint_every=30,
            log_every=5,
        ),
    ),
}
