"""`clarify-jax convert`: a Hugging Face directory or a GGUF file into a params checkpoint."""

from __future__ import annotations

import dataclasses

from clarify_jax.checkpoints.convert import hf_to_checkpoint
from clarify_jax.model.config import Dtype
from clarify_jax.parallel.sharding import optional_sharding
from clarify_jax.util.storage import local_copy, output_dir


@dataclasses.dataclass
class ConvertConfig:
    """Convert a Hugging Face model directory, or a GGUF file, into an orbax checkpoint of the params.

    The output directory gets `params/` (orbax) plus the source's config.json,
    generation_config.json and tokenizer files (for a GGUF file: rebuilt from its metadata, the
    tokenizer as tokenizer.json), so `export` can turn it back into an HF model.
    """

    model: str
    """Hugging Face model directory (local or gs://): config.json and model.safetensors (or sharded
    files with model.safetensors.index.json); or a GGUF file (llama or qwen2 architecture; F32,
    F16, BF16, Q8_0, Q4_0/1, Q5_0/1 and K-quant tensors are dequantized)."""
    out: str
    """Output directory (created), local or gs://bucket/prefix."""
    dtype: Dtype = "bfloat16"
    """Dtype of the stored params."""
    mesh: str | None = None
    """Spread the params over the devices while converting, as data,fsdp,tensor sizes (e.g. 1,-1,1),
    for models larger than one device's memory; default: the first device."""


def run(config: ConvertConfig) -> None:
    with output_dir(config.out) as out:
        hf_to_checkpoint(
            local_copy(config.model), out.local, dtype=config.dtype, sharding=optional_sharding(config.mesh)
        )
    print(f"wrote {config.out}")
