"""SmolLM2-135M-Instruct (the GGUF file `clarify_jax.hf.smollm2` finds) converted once into a
cache directory, an ordinary `clarify-jax convert` output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clarify_jax.checkpoints.convert import hf_to_checkpoint
from clarify_jax.hf.smollm2 import smollm2_gguf_path


def default_cache_dir() -> Path:
    """.cache/smollm2 in a checkout of this project (as `make smollm2` writes it), else
    ~/.cache/clarify_jax/smollm2."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").exists() and (root / "clarify_jax").is_dir():
        return root / ".cache" / "smollm2"
    return Path("~/.cache/clarify_jax/smollm2").expanduser()


def converted_smollm2(cache_dir: str | Path | None = None, dtype: str = "float32") -> Path:
    """A `convert` output of SmolLM2-135M-Instruct in `cache_dir` (default: `default_cache_dir()`),
    converted on the first call and reused afterwards."""
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # The conversion writes params/ last, so its presence means a finished one.
    if (out / "params").is_dir() and (out / "config.json").exists():
        stored = json.loads((out / "config.json").read_text()).get("torch_dtype")
        if stored == dtype:
            return out
    if (out / "params").exists():
        shutil.rmtree(out / "params")  # another dtype: converted again
    return hf_to_checkpoint(smollm2_gguf_path(), out, dtype=dtype, progress=False)
