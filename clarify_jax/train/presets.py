"""Training presets: every `PRESETS` dict in the checkout's `configs/*.py` (name -> (description,
TrainConfig)), plus `default` (the library defaults, one stage)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import tyro

from clarify_jax.train.config import Stage, TrainConfig

CONFIGS_DIR = Path(os.environ.get("CLARIFY_JAX_CONFIGS", Path(__file__).resolve().parents[2] / "configs"))


def load_presets(directory: Path = CONFIGS_DIR) -> dict[str, tuple[str, TrainConfig]]:
    presets = {
        "default": (
            "Library defaults: one stage of 100 steps, full fine-tuning.",
            TrainConfig(model=tyro.MISSING, out=tyro.MISSING, stages=(Stage(steps=100),)),
        )
    }
    for path in sorted(directory.glob("*.py")) if directory.is_dir() else ():
        spec = importlib.util.spec_from_file_location(f"clarify_jax_configs.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses in the module look themselves up there
        spec.loader.exec_module(module)
        for name, preset in getattr(module, "PRESETS", {}).items():
            if name in presets:
                raise ValueError(f"{path}: preset {name!r} is defined twice")
            presets[name] = preset
    return presets
