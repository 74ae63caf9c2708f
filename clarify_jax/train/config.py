"""The training run's configuration: dataclasses that tyro turns into `clarify-jax train` flags.

Presets in `configs/` build a `TrainConfig`; every field can then be overridden on the command
line (`--stages.1.learning-rate 5e-6`). The number of stages is fixed by the preset.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from clarify_jax.model.config import DEFAULT_LORA_TARGETS, Dtype, RematPolicy


@dataclasses.dataclass
class DataConfig:
    sources: tuple[str, ...] = ()
    """Named training sources, `name=path[:type,type...]`: a JSONL of synthesized rows (or a TFDS
    dataset directory from `synthesize`), optionally only rows of the listed `type`s, e.g.
    `clear=out/train.jsonl:original` `clarify=out/train.jsonl:ambiguous,inconsistent,incomplete`."""
    validation: tuple[str, ...] = ()
    """Validation sources in the same form (all are read in full, unweighted)."""
    seq_len: int = 2048
    """Tokens per packed row."""
    batch_size: int = 16
    """Global rows per optimizer step, over all hosts (split into grad_accum micro-batches)."""
    row_format: Literal["chat", "paper-v4"] = "chat"
    """chat: each row through the model's chat template, loss on the answer tokens only (ours);
    paper-v4: the paper code's plain-text rows (its instruction, the problem, its clear / clarify
    prefix and the answer with its spacing, BOS and EOS), loss on every token; round1_instruction,
    answer_prefix and first_turn_only then do not apply (the format has its own, single-turn)."""
    round1_instruction: bool = True
    """Put the HumanEvalComm round-1 instruction before each problem (the paper's best format)."""
    answer_prefix: bool = True
    """Start each first answer with the paper's clear / clarify prefix."""
    first_turn_only: bool = False
    """Train on the first exchange of each dialogue only (problem -> code or questions), not on the
    answers and the code that follow the questions."""
    too_long: Literal["truncate", "drop"] = "truncate"
    prefetch_workers: int = 0
    """Render in this many worker processes (0: in the training process)."""


@dataclasses.dataclass
class Stage:
    steps: int
    """Optimizer steps in this stage."""
    name: str = ""
    mixture: str = ""
    """Source weights `name=weight,...` (default: all sources equally)."""
    clarify_weight: float = 1.0
    """Weight of the mean cross-entropy on clarifying-question tokens."""
    code_weight: float = 1.0
    """Weight of the mean cross-entropy on code-answer tokens."""
    decision_weight: float = 0.0
    """Weight of the mean cross-entropy on the first token of each answer (chat rows), where the
    model chooses to ask or to code; counted on top of the two above. Always logged."""
    learning_rate: float = 1e-5
    """Peak learning rate of this stage."""
    warmup_steps: int = 0
    """Linear warmup from 0 at the start of the stage."""


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW. Norm scales and biases get no weight decay."""

    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float | None = 1.0
    """Clip gradients to this global norm (None: no clipping)."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after each stage's warmup, to final_lr_ratio x the stage's peak at its end."""
    final_lr_ratio: float = 0.1


@dataclasses.dataclass
class LoraConfig:
    rank: int = 0
    """LoRA rank; 0 trains all parameters (full fine-tuning)."""
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    """Projections that get adapters; any of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj."""
    last_layers: int = 0
    """Train the adapters of the last N decoder layers only (0: every layer). The layers below run
    forward only, without a backward pass, so a step costs less; their adapters stay zero."""


@dataclasses.dataclass
class DistributedConfig:
    """Multi-host set-up. On TPU VMs and SLURM, leave all empty: JAX finds the hosts itself."""

    initialize: bool = False
    """Call jax.distributed.initialize() (set on every host of a multi-host run)."""
    coordinator_address: str | None = None
    """host:port of process 0 (only where JAX cannot detect it)."""
    num_processes: int | None = None
    process_id: int | None = None
    cpu_collectives: Literal["gloo", "mpi", "none"] = "gloo"
    """Collectives for CPU devices across processes (tests; harmless on TPU/GPU)."""


@dataclasses.dataclass
class TrainConfig:
    model: str
    """Starting model: a Hugging Face directory or a `clarify-jax convert` output (local or gs://)."""
    out: str
    """Run directory, local or gs://bucket/prefix: checkpoints/, metrics.jsonl, tensorboard/, plots/,
    model/ (config + tokenizer)."""
    stages: tuple[Stage, ...]
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tokenizer: str | None = None
    """Tokenizer directory (default: the model directory)."""
    mesh: str = "1,-1,1"
    """Device mesh sizes for data,fsdp,tensor; one -1 takes the remaining devices."""
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    grad_accum: int = 1
    """Micro-batches per step; the global batch is split into this many."""
    param_dtype: Dtype = "float32"
    """Stored (master) weights. float32 with compute bfloat16 is mixed precision; a frozen LoRA base
    can be bfloat16 (adapters are always float32)."""
    compute_dtype: Dtype = "bfloat16"
    remat: RematPolicy = "none"
    """Activation rematerialisation per layer: none, full, dots, dots_no_batch."""
    seed: int = 0
    eval_every: int = 0
    """Validation loss every N steps (0: only at the end; needs data.validation)."""
    eval_batches: int = 0
    """Validation batches per evaluation (0: the whole validation set)."""
    checkpoint_every: int = 100
    """Save every N steps (and at the end, and on SIGTERM)."""
    keep_checkpoints: int = 3
    average_last: int = 1
    """The run's model is the mean of the weights of its last N checkpoints (1: its last step). Written
    at the end to `out`/averaged; evaluate, export and chat given the run load it. N <= keep_checkpoints."""
    log_every: int = 10
    resume: bool = False
    """Continue from the latest checkpoint in `out` (params, optimizer, data position, step)."""
    progress: bool = True
    """Show a progress bar."""
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> int:
        """Index of the stage that runs optimizer step `step` (0-based)."""
        end = 0
        for index, stage in enumerate(self.stages):
            end += stage.steps
            if step < end:
                return index
        return len(self.stages) - 1

    def stage_start(self, index: int) -> int:
        return sum(stage.steps for stage in self.stages[:index])
