"""DeepSeek-Coder-6.7B, CodeLlama-7B and Qwen2.5-Coder-7B (Instruct) on TPU v4-8, v5e-16, v5p-8
and 8xH100: the paper's LoRA recipe and full fine-tuning, named `{model}-{lora|full}-{chip}`.

Every preset trains the paper's schedule (500 steps, lr 1e-5, 25 warmup steps, linear decay,
effective batch 16 rows of 2048 tokens); meshes, micro-batches (`grad_accum`), remat and dtypes
are chosen so that `scripts/memory_estimate.py` (clarify_jax/train/memory_estimate.py) puts each
within its chip's memory with 10% headroom (tests/test_presets.py checks it). Pass --model and --out, e.g.

    clarify-jax train deepseek-6.7b-lora-v5p-8 --model deepseek-coder-6.7b-instruct/ --out runs/dsc

Dtypes. LoRA: a bfloat16 frozen base and float32 adapters (as in `paper-lora`). Full
fine-tuning: float32 master weights with bfloat16 compute wherever they fit, because bfloat16
weights (and AdamW moments, which optax keeps in the params' dtype) lose most updates at lr 1e-5:
an Adam step moves a weight by about lr, less than half of bfloat16's rounding step for any weight
above 2^-8 ~ 0.004 in magnitude (most of them), and the norm scales (~1) never move. Float32
weights, gradients and moments take 16 bytes a parameter (108-122 GB for these models), which
leaves a v4-8 (4 x 32 GiB) too little for activations: the v4-8 full presets hold bfloat16
weights (8 bytes a parameter) and carry that caveat. Prefer LoRA, or v5p-8, for full fine-tuning.
"""

from typing import NamedTuple

import tyro

from clarify_jax.train.config import (
    DataConfig,
    DistributedConfig,
    LoraConfig,
    OptimizerConfig,
    Stage,
    TrainConfig,
)


class Chip(NamedTuple):
    chips: int
    hbm_gib: float
    """Memory per chip."""
    hosts: int
    usable: float = 1.0
    """Share of `hbm_gib` that XLA's allocator may take."""


CHIPS = {
    "v4-8": Chip(chips=4, hbm_gib=32, hosts=1),
    "v5e-16": Chip(chips=16, hbm_gib=16, hosts=4),
    "v5p-8": Chip(chips=4, hbm_gib=95, hosts=1),
    # JAX preallocates 75% of a GPU's memory unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise.
    "8xh100": Chip(chips=8, hbm_gib=80, hosts=1, usable=0.75),
}

MODELS = {  # preset prefix -> the Hugging Face model (configs/models.py holds their config.json)
    "deepseek-6.7b": "deepseek-coder-6.7b-instruct",
    "codellama-7b": "CodeLlama-7b-Instruct",
    "qwen2.5-coder-7b": "Qwen2.5-Coder-7B-Instruct",
}


class Plan(NamedTuple):
    mesh: str
    """data,fsdp,tensor; (16 / grad_accum) rows must divide over data x fsdp."""
    grad_accum: int
    remat: str
    param_dtype: str


# (mode, chip) -> plan for all three models; MODEL_PLANS overrides it for one model. LoRA keeps
# the bfloat16 base whole on each chip where it fits (pure data parallelism: only the adapters'
# gradients cross chips); full fine-tuning shards everything with fsdp.
PLANS = {
    ("lora", "v4-8"): Plan("1,4,1", 2, "dots_no_batch", "bfloat16"),
    ("lora", "v5e-16"): Plan("1,16,1", 1, "dots_no_batch", "bfloat16"),
    ("lora", "v5p-8"): Plan("4,1,1", 1, "dots_no_batch", "bfloat16"),
    ("lora", "8xh100"): Plan("8,1,1", 1, "dots_no_batch", "bfloat16"),
    ("full", "v4-8"): Plan("1,4,1", 1, "full", "bfloat16"),  # float32 does not fit (module docstring)
    ("full", "v5e-16"): Plan("1,16,1", 1, "full", "float32"),
    ("full", "v5p-8"): Plan("1,4,1", 1, "dots_no_batch", "float32"),
    ("full", "8xh100"): Plan("1,8,1", 1, "dots_no_batch", "float32"),
}
# Qwen's 152k vocabulary makes its logits (and LM head) 4.7x those of the 32k-vocabulary models:
# on the small-memory chips it takes smaller micro-batches, and tensor parallelism splits the
# vocabulary (and heads, MLP) over 2 chips.
MODEL_PLANS = {
    ("qwen2.5-coder-7b", "lora", "v4-8"): Plan("1,4,1", 4, "dots_no_batch", "bfloat16"),
    ("qwen2.5-coder-7b", "lora", "v5e-16"): Plan("1,8,2", 2, "dots_no_batch", "bfloat16"),
    ("qwen2.5-coder-7b", "full", "v4-8"): Plan("1,2,2", 8, "full", "bfloat16"),
    ("qwen2.5-coder-7b", "full", "v5e-16"): Plan("1,8,2", 2, "full", "float32"),
}


def _preset(model: str, mode: str, chip: str) -> tuple[str, TrainConfig]:
    plan = MODEL_PLANS.get((model, mode, chip), PLANS[mode, chip])
    lora = mode == "lora"
    if lora:
        what = "LoRA r=16 on q/k/v/o over a bfloat16 base"
    elif plan.param_dtype == "float32":
        what = "full fine-tuning, float32 master weights"
    else:
        what = (
            "full fine-tuning in bfloat16 (float32 does not fit; bfloat16 rounds away many lr-1e-5 updates)"
        )
    description = (
        f"{MODELS[model]}: {what} on {chip} (mesh {plan.mesh}, grad_accum {plan.grad_accum}, "
        f"remat {plan.remat}); 500 steps at lr 1e-5, batch 16 x 2048."
    )
    return description, TrainConfig(
        model=tyro.MISSING,
        out=tyro.MISSING,
        stages=(Stage(name="clarify-aware", steps=500, learning_rate=1e-5, warmup_steps=25),),
        data=DataConfig(seq_len=2048, batch_size=16),
        mesh=plan.mesh,
        grad_accum=plan.grad_accum,
        remat=plan.remat,
        param_dtype=plan.param_dtype,
        compute_dtype="bfloat16",
        optimizer=OptimizerConfig(b2=0.999, weight_decay=0.0, schedule="linear", final_lr_ratio=0.0),
        lora=LoraConfig(rank=16, alpha=16.0, dropout=0.05) if lora else LoraConfig(rank=0),
        distributed=DistributedConfig(initialize=CHIPS[chip].hosts > 1),
        eval_every=100,
        checkpoint_every=100,
        log_every=10,
    )


# Preset name -> (Hugging Face model, chip): what scripts/memory_estimate.py sizes each against.
TARGETS = {
    f"{model}-{mode}-{chip}": (MODELS[model], chip)
    for model in MODELS
    for mode in ("lora", "full")
    for chip in CHIPS
}
PRESETS = {
    f"{model}-{mode}-{chip}": _preset(model, mode, chip)
    for model in MODELS
    for mode in ("lora", "full")
    for chip in CHIPS
}
