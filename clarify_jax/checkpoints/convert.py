"""Move a model between Hugging Face directories (or GGUF files, inbound) and orbax params
checkpoints (the layout `checkpoints/load.py` reads)."""

from __future__ import annotations

import shutil
from pathlib import Path

from clarify_jax.checkpoints.load import METADATA_FILES, PARAMS_DIR, load_model, metadata_dir
from clarify_jax.checkpoints.params import save_params
from clarify_jax.hf.gguf_io import GGUFModel, is_gguf
from clarify_jax.hf.pretrained import load_gguf, load_pretrained, save_pretrained
from clarify_jax.parallel.sharding import LogicalSharding


def hf_to_checkpoint(
    model_dir: str | Path,
    out_dir: str | Path,
    dtype: str = "bfloat16",
    sharding: LogicalSharding | None = None,
    progress: bool = True,
) -> Path:
    """Convert an HF directory, or a GGUF file (dequantized; its config and tokenizer rebuilt as
    HF files), into `out_dir`/params plus the HF metadata files."""
    model_dir, out = Path(model_dir), Path(out_dir)
    if is_gguf(model_dir):
        gguf = GGUFModel(model_dir)
        # Config and tokenizer first: a vocabulary that cannot be rebuilt fails before the long part.
        gguf.write_hf_metadata(gguf.model_config(param_dtype=dtype, dtype=dtype), out)
        _, params = load_gguf(gguf, dtype=dtype, sharding=sharding, progress=progress)
        save_params(out / PARAMS_DIR, params)
        return out
    _, params = load_pretrained(model_dir, dtype=dtype, sharding=sharding, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    save_params(out / PARAMS_DIR, params)
    for name in METADATA_FILES:
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out / name)
    return out


def export_to_hf(
    source: str | Path,
    out_dir: str | Path,
    dtype: str | None = None,
    max_shard_size: str = "5GB",
    sharding: LogicalSharding | None = None,
    progress: bool = True,
) -> Path:
    cfg, params = load_model(source, dtype=dtype, sharding=sharding)
    return save_pretrained(
        cfg,
        params,
        out_dir,
        dtype=dtype,
        max_shard_size=max_shard_size,
        source_dir=metadata_dir(source),
        progress=progress,
    )
