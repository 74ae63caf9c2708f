"""Move a model between Hugging Face directories and orbax params checkpoints.

A converted directory holds the HF metadata (config.json, generation_config.json, tokenizer
files) beside `params/`, an orbax checkpoint of the params pytree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from clarify_jax.hf.pretrained import TOKENIZER_FILES, load_pretrained, save_pretrained
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params
from clarify_jax.train.checkpoints import restore_params, save_params
from clarify_jax.train.sharding import LogicalSharding

PARAMS_DIR = "params"
METADATA_FILES = ("config.json", "generation_config.json") + TOKENIZER_FILES


def is_params_checkpoint(path: Path) -> bool:
    return (path / PARAMS_DIR).is_dir() and (path / "config.json").exists()


def hf_to_checkpoint(model_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16",
                     sharding: LogicalSharding | None = None, progress: bool = True) -> Path:
    model_dir, out = Path(model_dir), Path(out_dir)
    _, params = load_pretrained(model_dir, dtype=dtype, sharding=sharding, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    save_params(out / PARAMS_DIR, params)
    for name in METADATA_FILES:
        if (model_dir / name).exists():
            shutil.copyfile(model_dir / name, out / name)
    return out


def load_any(source: str | Path, dtype: str | None = None,
             sharding: LogicalSharding | None = None) -> tuple[ModelConfig, Params]:
    """(config, params) from an HF directory or a converted params checkpoint."""
    source = Path(source)
    if is_params_checkpoint(source):
        cfg = ModelConfig.from_hf_file(source)
        stored_dtype = dtype or _stored_dtype(source)
        cfg = cfg.replace(param_dtype=stored_dtype, dtype=stored_dtype)
        return cfg, restore_params(source / PARAMS_DIR, cfg, sharding)
    return load_pretrained(source, dtype=dtype or "float32", sharding=sharding)


def _stored_dtype(checkpoint_dir: Path) -> str:
    meta = ocp.StandardCheckpointer().metadata((checkpoint_dir / PARAMS_DIR).absolute())
    meta = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
    return str(jax.tree.leaves(meta)[0].dtype)


def export_to_hf(source: str | Path, out_dir: str | Path, dtype: str | None = None,
                 max_shard_size: str = "5GB", sharding: LogicalSharding | None = None,
                 progress: bool = True) -> Path:
    cfg, params = load_any(source, dtype=dtype, sharding=sharding)
    return save_pretrained(cfg, params, out_dir, dtype=dtype, max_shard_size=max_shard_size,
                           source_dir=source, progress=progress)
