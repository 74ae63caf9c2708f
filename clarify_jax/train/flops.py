"""Model FLOPs per token and chip peaks, for MFU (the scaling book's accounting) and for the
memory-bandwidth bound of decoding.

Training FLOPs per token = 6 N (forward 2N, backward 4N over the matmul weights N) plus attention:
12 L T N H for the score and value matmuls at sequence length T (counted over the full T x T
square, as PaLM's MFU does, although causal masking skips half). With a frozen LoRA base the
backward pass computes no weight gradients for the base, so its weights count 4 N, not 6 N.
"""

from __future__ import annotations

import jax

from clarify_jax.model.config import ModelConfig

# Dense bf16 peak FLOP/s per chip (vendor figures).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5": 459e12,  # v5p
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,  # SXM; the PCIe card is lower (756e12)
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
}


# Peak memory (HBM) bandwidth per chip, bytes/s (vendor figures): a batch-1 decode step reads every
# weight once, so weight bytes / this is its floor.
PEAK_MEMORY_BANDWIDTH = {
    "TPU v4": 1.2e12,
    "TPU v5 lite": 819e9,
    "TPU v5e": 819e9,
    "TPU v5": 2.765e12,
    "TPU v5p": 2.765e12,
    "TPU v6 lite": 1.64e12,
    "TPU v6e": 1.64e12,
    "NVIDIA H100": 3.35e12,  # SXM (HBM3); the PCIe card has 2.0e12
    "NVIDIA H200": 4.8e12,
    "NVIDIA A100": 2.039e12,  # 80 GB SXM; the 40 GB card has 1.555e12
}


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that take part in matmuls: everything but the embedding lookup table (which still
    counts when it is tied to the LM head) and the norm scales."""
    embedding = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    norms = (2 * cfg.num_layers + 1) * cfg.hidden_size
    return cfg.num_params - embedding - norms


def training_flops_per_token(cfg: ModelConfig, seq_len: int, frozen_base: bool = False) -> float:
    per_weight = 4 if frozen_base else 6
    weights = matmul_params(cfg) * per_weight
    attention = 12 * cfg.num_layers * seq_len * cfg.num_heads * cfg.head_dim
    # The first `cfg.frozen_layers` layers run forward only: 2 FLOPs a weight, a third of the attention.
    layer_weights = (matmul_params(cfg) - cfg.vocab_size * cfg.hidden_size) // cfg.num_layers
    weights -= cfg.frozen_layers * layer_weights * (per_weight - 2)
    attention -= cfg.frozen_layers * 8 * seq_len * cfg.num_heads * cfg.head_dim
    return float(weights + attention)


def peak_flops(device: jax.Device | None = None) -> float | None:
    """The chip's dense bf16 peak, or None where unknown (CPUs)."""
    return _by_kind(PEAK_FLOPS, device)


def peak_memory_bandwidth(device: jax.Device | None = None) -> float | None:
    """The chip's peak memory bandwidth in bytes/s, or None where unknown (CPUs)."""
    return _by_kind(PEAK_MEMORY_BANDWIDTH, device)


def _by_kind(table: dict[str, float], device: jax.Device | None) -> float | None:
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "")
    for name in sorted(table, key=len, reverse=True):  # "TPU v5 lite" before "TPU v5"
        if kind.startswith(name):
            return table[name]
    return None
