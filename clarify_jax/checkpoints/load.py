"""Load a model from any of its on-disk forms: a Hugging Face directory, a `clarify-jax convert`
output, or a training run (its averaged weights or latest checkpoint, see run_dir.find_run) or one
of its `checkpoints/<step>` directories.

A converted directory holds the HF metadata (config.json, generation_config.json, tokenizer
files) beside `params/`, an orbax checkpoint of the params pytree. A training run holds the same
metadata under `model/` (see run_dir.py); LoRA adapters are merged into the base model when it is
loaded.
"""

from __future__ import annotations

from pathlib import Path

import jax

from clarify_jax.checkpoints.params import restore_params, stored_metadata
from clarify_jax.checkpoints.run_dir import (
    MODEL_DIR,
    find_run,
    holds_merged_model,
    read_step_meta,
    restore_params_item,
)
from clarify_jax.hf.pretrained import TOKENIZER_FILES, load_pretrained
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.lora import combine, merge_lora, split_lora
from clarify_jax.model.transformer import Params, param_axes, param_shapes
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.util.storage import is_remote, local_copy

PARAMS_DIR = "params"
METADATA_FILES = ("config.json", "generation_config.json") + TOKENIZER_FILES


def is_params_checkpoint(path: Path) -> bool:
    return (path / PARAMS_DIR).is_dir() and (path / "config.json").exists()


def metadata_dir(source: str | Path) -> Path:
    """The folder with the model's config.json and tokenizer files: a run's `model/`, else `source`
    (a gs:// source is read from its local copy)."""
    source = local_copy(source)
    run = find_run(source)
    return run[0] / MODEL_DIR if run is not None else Path(source)


def load_model(
    source: str | Path, dtype: str | None = None, sharding: LogicalSharding | None = None
) -> tuple[ModelConfig, Params]:
    """(config, params) from an HF directory, a converted params checkpoint, or a training run
    (its latest checkpoint) or one of its `checkpoints/<step>` directories; gs:// sources are read
    from a local copy."""
    source = local_copy(source)
    if find_run(source) is not None:
        return load_training_checkpoint(source, dtype, sharding)
    if is_params_checkpoint(source):
        cfg = ModelConfig.from_hf_file(source)
        stored_dtype = dtype or _stored_dtype(source)
        cfg = cfg.replace(param_dtype=stored_dtype, dtype=stored_dtype)
        return cfg, restore_params(source / PARAMS_DIR, cfg, sharding)
    return load_pretrained(source, dtype=dtype or "float32", sharding=sharding)


def load_training_checkpoint(
    source: Path, dtype: str | None = None, sharding: LogicalSharding | None = None
) -> tuple[ModelConfig, Params]:
    """A training checkpoint as a plain model: full params, or the base with the adapters merged."""
    run_dir, step_dir = find_run(source)
    meta = read_step_meta(step_dir)
    lora = dict(meta["lora"], rank=0) if holds_merged_model(meta) else meta["lora"]
    cfg = ModelConfig.from_hf_file(run_dir / MODEL_DIR).replace(
        param_dtype=meta["param_dtype"],
        dtype=meta["param_dtype"],
        lora_rank=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_targets=tuple(lora["targets"]),
    )
    shapes = param_shapes(cfg)
    if sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, shapes)
    else:
        shardings = sharding.tree(param_axes(cfg), shapes)
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    trainable_abstract, _ = split_lora(abstract) if cfg.lora_rank else (abstract, None)
    trainable = restore_params_item(step_dir, trainable_abstract)
    if not cfg.lora_rank:
        params = trainable
    else:
        base_source = meta["model"]
        if not is_remote(base_source) and not Path(base_source).exists():
            raise FileNotFoundError(
                f"{step_dir}: holds LoRA adapters; their base model {base_source} "
                "is not there (the run's --model must stay readable for export)"
            )
        _, base = load_model(base_source, dtype=meta["param_dtype"], sharding=sharding)
        params = merge_lora(cfg, combine(trainable, base))
    plain = cfg.replace(lora_rank=0)
    if dtype is not None and dtype != cfg.param_dtype:
        params = jax.tree.map(lambda x: x.astype(dtype), params)
        plain = plain.replace(param_dtype=dtype, dtype=dtype)
    return plain, params


def _stored_dtype(checkpoint_dir: Path) -> str:
    return str(jax.tree.leaves(stored_metadata(checkpoint_dir / PARAMS_DIR))[0].dtype)
