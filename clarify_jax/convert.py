"""Move a model between Hugging Face directories (or GGUF files, inbound) and orbax params checkpoints.

A converted directory holds the HF metadata (config.json, generation_config.json, tokenizer
files) beside `params/`, an orbax checkpoint of the params pytree. A training run directory
(`clarify-jax train --out`) holds the same metadata under `model/` and checkpoints under
`checkpoints/<step>/`; LoRA adapters are merged into the base model when it is loaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax

from clarify_jax.hf.gguf_io import GGUFModel, is_gguf
from clarify_jax.hf.pretrained import TOKENIZER_FILES, load_gguf, load_pretrained, save_pretrained
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.train.checkpoints import restore_params, save_params, stored_metadata

PARAMS_DIR = "params"
METADATA_FILES = ("config.json", "generation_config.json") + TOKENIZER_FILES


def is_params_checkpoint(path: Path) -> bool:
    return (path / PARAMS_DIR).is_dir() and (path / "config.json").exists()


def hf_to_checkpoint(model_dir: str | Path, out_dir: str | Path, dtype: str = "bfloat16",
                     sharding: LogicalSharding | None = None, progress: bool = True) -> Path:
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


def load_any(source: str | Path, dtype: str | None = None,
             sharding: LogicalSharding | None = None) -> tuple[ModelConfig, Params]:
    """(config, params) from an HF directory, a converted params checkpoint, or a training run
    (its latest checkpoint) or one of its `checkpoints/<step>` directories."""
    source = Path(source)
    if training_step_dir(source) is not None:
        return load_training_checkpoint(source, dtype, sharding)
    if is_params_checkpoint(source):
        cfg = ModelConfig.from_hf_file(source)
        stored_dtype = dtype or _stored_dtype(source)
        cfg = cfg.replace(param_dtype=stored_dtype, dtype=stored_dtype)
        return cfg, restore_params(source / PARAMS_DIR, cfg, sharding)
    return load_pretrained(source, dtype=dtype or "float32", sharding=sharding)


def training_step_dir(path: Path) -> Path | None:
    """The step directory `path` names: itself (checkpoints/<step>) or a run's latest step."""
    if path.parent.name == "checkpoints" and (path / "meta").is_dir():
        return path
    if (path / "checkpoints").is_dir() and (path / "model" / "config.json").exists():
        steps = sorted((int(p.name) for p in (path / "checkpoints").iterdir()
                        if p.name.isdigit() and (p / "meta").is_dir()), reverse=True)
        if not steps:
            raise FileNotFoundError(f"{path}: a training run without finished checkpoints")
        return path / "checkpoints" / str(steps[0])
    return None


def load_training_checkpoint(source: Path, dtype: str | None = None,
                             sharding: LogicalSharding | None = None) -> tuple[ModelConfig, Params]:
    """A training checkpoint as a plain model: full params, or the base with the adapters merged."""
    from clarify_jax.model.transformer import param_axes, param_shapes
    from clarify_jax.train.lora import combine, merge_lora, split_lora
    from clarify_jax.train.run_checkpoints import restore_params_item

    step_dir = training_step_dir(source)
    run_dir = step_dir.parent.parent
    meta = json.loads((step_dir / "meta" / "metadata").read_text())
    lora = meta["lora"]
    cfg = ModelConfig.from_hf_file(run_dir / "model").replace(
        param_dtype=meta["param_dtype"], dtype=meta["param_dtype"], lora_rank=lora["rank"],
        lora_alpha=lora["alpha"], lora_targets=tuple(lora["targets"]))
    shapes = param_shapes(cfg)
    if sharding is None:
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, shapes)
    else:
        shardings = sharding.tree(param_axes(cfg), shapes)
    abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                            shapes, shardings)
    trainable_abstract, _ = split_lora(abstract) if cfg.lora_rank else (abstract, None)
    trainable = restore_params_item(step_dir, trainable_abstract)
    if not cfg.lora_rank:
        params = trainable
    else:
        base_source = Path(meta["model"])
        if not base_source.exists():
            raise FileNotFoundError(f"{step_dir}: holds LoRA adapters; their base model {base_source} "
                                    "is not there (the run's --model must stay readable for export)")
        _, base = load_any(base_source, dtype=meta["param_dtype"], sharding=sharding)
        params = merge_lora(cfg, combine(trainable, base))
    plain = cfg.replace(lora_rank=0)
    if dtype is not None and dtype != cfg.param_dtype:
        params = jax.tree.map(lambda x: x.astype(dtype), params)
        plain = plain.replace(param_dtype=dtype, dtype=dtype)
    return plain, params


def _stored_dtype(checkpoint_dir: Path) -> str:
    return str(jax.tree.leaves(stored_metadata(checkpoint_dir / PARAMS_DIR))[0].dtype)


def export_to_hf(source: str | Path, out_dir: str | Path, dtype: str | None = None,
                 max_shard_size: str = "5GB", sharding: LogicalSharding | None = None,
                 progress: bool = True) -> Path:
    cfg, params = load_any(source, dtype=dtype, sharding=sharding)
    step_dir = training_step_dir(Path(source))
    metadata_dir = step_dir.parent.parent / "model" if step_dir is not None else source
    return save_pretrained(cfg, params, out_dir, dtype=dtype, max_shard_size=max_shard_size,
                           source_dir=metadata_dir, progress=progress)
