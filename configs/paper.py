"""The ClarifyCoder paper's recipe (deepseek-coder-6.7b-instruct): LoRA r=16, alpha=16 on q/k/v/o,
lr 1e-5, effective batch 16, 500 steps. `paper-lora` and `paper-lora-staged` render rows our way
(the chat template, loss on the answer tokens, with the round-1 instruction and the clear /
clarify answer prefixes); `paper-lora-v4-exact` renders them as the paper's code does (plain text,
its spacing, loss on every token, warmup 100: clarify-coder's fine-tuning/
clarify_aware_fine_tuning_v2.py, tokenize_v4 and its TrainingArguments). Set --mesh and
--grad-accum for your chips."""

import tyro

from clarify_jax.train.config import DataConfig, LoraConfig, OptimizerConfig, Stage, TrainConfig

PRESETS = {
    "paper-lora": (
        "The paper's LoRA recipe on one stage (clarify and code weighted equally).",
        TrainConfig(
            model=tyro.MISSING,
            out=tyro.MISSING,
            stages=(Stage(name="clarify-aware", steps=500, learning_rate=1e-5, warmup_steps=25),),
            data=DataConfig(seq_len=2048, batch_size=16),
            optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0),
            lora=LoraConfig(
                rank=16, alpha=16.0, dropout=0.05, targets=("q_proj", "k_proj", "v_proj", "o_proj")
            ),
            param_dtype="bfloat16",
            compute_dtype="bfloat16",
            remat="dots_no_batch",
            eval_every=100,
            checkpoint_every=100,
            log_every=10,
        ),
    ),
    "paper-lora-v4-exact": (
        "The paper code's own run: plain-text v4 rows (no chat template), loss on every token, "
        "warmup 100, linear decay to 0, AdamW (0.9, 0.999), gradient norm clipped at 1.",
        TrainConfig(
            model=tyro.MISSING,
            out=tyro.MISSING,
            stages=(Stage(name="clarify-aware-v4", steps=500, learning_rate=1e-5, warmup_steps=100),),
            data=DataConfig(seq_len=2048, batch_size=16, row_format="paper-v4"),
            optimizer=OptimizerConfig(
                b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0, clip_norm=1.0
            ),
            lora=LoraConfig(
                rank=16, alpha=16.0, dropout=0.05, targets=("q_proj", "k_proj", "v_proj", "o_proj")
            ),
            param_dtype="bfloat16",
            compute_dtype="bfloat16",
            remat="dots_no_batch",
            eval_every=100,
            checkpoint_every=100,
            log_every=10,
        ),
    ),
    "paper-lora-staged": (
        "The paper's LoRA recipe split into a clarification stage and a joint stage that restores "
        "the weight on code.",
        TrainConfig(
            model=tyro.MISSING,
            out=tyro.MISSING,
            stages=(
                Stage(
                    name="clarify",
                    steps=300,
                    clarify_weight=1.0,
                    code_weight=0.5,
                    learning_rate=1e-5,
                    warmup_steps=25,
                ),
                Stage(
                    name="joint",
                    steps=200,
                    clarify_weight=1.0,
                    code_weight=1.0,
                    learning_rate=5e-6,
                    warmup_steps=0,
                ),
            ),
            data=DataConfig(seq_len=2048, batch_size=16),
            optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0),
            lora=LoraConfig(rank=16, alpha=16.0, dropout=0.05),
            param_dtype="bfloat16",
            compute_dtype="bfloat16",
            remat="dots_no_batch",
            eval_every=100,
            checkpoint_every=100,
            log_every=10,
        ),
    ),
}
