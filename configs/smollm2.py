"""SmolLM2-135M-Instruct on a 2-core CPU: the recipe `make reproduce-small` trains with.

Chosen by measurement (README, "Reproducing the paper at small scale", and the issue notes): the
rows and sources are the reproduction's MBPP synthesis, given on the command line as
`--data.sources clear=DATA/train.jsonl:original clarify=DATA/train.jsonl:ambiguous,inconsistent,incomplete`.
"""

import tyro

from clarify_jax.train.config import DataConfig, LoraConfig, OptimizerConfig, Stage, TrainConfig

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _smollm2(stages: tuple[Stage, ...], lora: LoraConfig, average_last: int = 1) -> TrainConfig:
    return TrainConfig(
        model=tyro.MISSING,
        out=tyro.MISSING,
        stages=stages,
        data=DataConfig(seq_len=512, batch_size=4, first_turn_only=True),
        optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="cosine", final_lr_ratio=0.1),
        lora=lora,
        param_dtype="float32",
        compute_dtype="float32",
        # On XLA:CPU, storing every layer's activations for the backward costs more memory traffic
        # than recomputing the batched attention products: 15 steps of the long LoRA preset ran at
        # 196 tokens/s instead of 173, 10 of the full one at 163 instead of 143, same losses.
        remat="dots_no_batch",
        eval_every=0,
        checkpoint_every=20,
        average_last=average_last,
        log_every=5,
    )


PRESETS = {
    "smollm2-135m-lora": (
        "SmolLM2-135M-Instruct, LoRA r=16 on every projection, one balanced stage (1 clear : 1 "
        "clarify row) of single-turn rows, lr 1e-3, 40 steps of 4 x 512 tokens.",
        _smollm2(
            (
                Stage(
                    name="clarify-aware",
                    steps=40,
                    mixture="clear=1,clarify=1",
                    learning_rate=1e-3,
                    warmup_steps=5,
                ),
            ),
            LoraConfig(rank=16, alpha=32.0, targets=ALL_PROJECTIONS),
        ),
    ),
    "smollm2-135m-lora-long": (
        "SmolLM2-135M-Instruct, LoRA r=16 on every projection, one balanced stage (1 clear : 1 "
        "clarify row) of single-turn rows with the ask-or-code token weighted 4x on top "
        "(decision_weight 4), lr 1e-3, 160 steps of 4 x 512 tokens, the model the mean of the weights "
        "of steps 120, 140 and 160; for the docstring-varied MBPP synthesis (reproduce_small.py "
        "--mbpp-style docstring-varied).",
        _smollm2(
            (
                Stage(
                    name="clarify-aware",
                    steps=160,
                    mixture="clear=1,clarify=1",
                    decision_weight=4.0,
                    learning_rate=1e-3,
                    warmup_steps=5,
                ),
            ),
            LoraConfig(rank=16, alpha=32.0, targets=ALL_PROJECTIONS),
            # How often the model asks still moves with each batch's mix at the end (README, "The
            # mean of the last three checkpoints").
            average_last=3,
        ),
    ),
    "smollm2-135m-full": (
        "SmolLM2-135M-Instruct, full fine-tuning, one balanced stage (1 clear : 1 clarify row) of "
        "single-turn rows, lr 5e-5, 40 steps of 4 x 512 tokens.",
        _smollm2(
            (
                Stage(
                    name="clarify-aware",
                    steps=40,
                    mixture="clear=1,clarify=1",
                    learning_rate=5e-5,
                    warmup_steps=5,
                ),
            ),
            LoraConfig(rank=0),
        ),
    ),
}
