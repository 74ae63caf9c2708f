"""The ClarifyCoder paper's recipe (deepseek-coder-6.7b-instruct): LoRA r=16, alpha=16 on q/k/v/o,
lr 1e-5, effective batch 16, 500 steps, loss on the answer tokens, the round-1 instruction and
the clear / clarify answer prefixes. Set --mesh and --grad-accum for your chips."""

import tyro

from clarify_jax.train.config import DataConfig, LoraConfig, OptimizerConfig, Stage, TrainConfig

PRESETS = {
    "paper-lora": (
        "The paper's LoRA recipe on one stage (clarify and code weighted equally).",
        TrainConfig(
            model=tyro.MISSING, out=tyro.MISSING,
            stages=(Stage(name="clarify-aware", steps=500, learning_rate=1e-5, warmup_steps=25),),
            data=DataConfig(seq_len=2048, batch_size=16),
            optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0),
            lora=LoraConfig(rank=16, alpha=16.0, dropout=0.05,
                            targets=("q_proj", "k_proj", "v_proj", "o_proj")),
            param_dtype="bfloat16", compute_dtype="bfloat16", remat="dots_no_batch",
            eval_every=100, checkpoint_every=100, log_every=10,
        ),
    ),
    "paper-lora-staged": (
        "The paper's LoRA recipe split into a clarification stage and a joint stage that restores "
        "the weight on code.",
        TrainConfig(
            model=tyro.MISSING, out=tyro.MISSING,
            stages=(
                Stage(name="clarify", steps=300, clarify_weight=1.0, code_weight=0.5,
                      learning_rate=1e-5, warmup_steps=25),
                Stage(name="joint", steps=200, clarify_weight=1.0, code_weight=1.0,
                      learning_rate=5e-6, warmup_steps=0),
            ),
            data=DataConfig(seq_len=2048, batch_size=16),
            optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0),
            lora=LoraConfig(rank=16, alpha=16.0, dropout=0.05),
            param_dtype="bfloat16", compute_dtype="bfloat16", remat="dots_no_batch",
            eval_every=100, checkpoint_every=100, log_every=10,
        ),
    ),
}
