"""Orbax params checkpoints: restore onto another mesh, and refuse a checkpoint of another shape."""

import jax
import numpy as np
import pytest

from clarify_jax import hf, model
from clarify_jax.checkpoints.convert import hf_to_checkpoint
from clarify_jax.checkpoints.load import load_model
from clarify_jax.checkpoints.params import CheckpointMismatch, restore_params
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding


def test_checkpoint_restores_sharded_onto_a_mesh(tiny_models, tmp_path):
    source = tiny_models("qwen2")
    hf_to_checkpoint(source, tmp_path / "ckpt", dtype="float32", progress=False)
    cfg, params = hf.load_pretrained(source)
    sharding = LogicalSharding(make_mesh("1,4,2"))
    cfg_restored, restored = load_model(tmp_path / "ckpt", sharding=sharding)
    assert cfg_restored == cfg
    embedding = restored["embed_tokens"]["embedding"]
    assert embedding.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_of_another_shape_is_refused_before_loading(tiny_models, tmp_path):
    hf_to_checkpoint(tiny_models("llama"), tmp_path / "ckpt", dtype="float32", progress=False)
    cfg = model.ModelConfig.from_hf_file(tiny_models("llama")).replace(intermediate_size=96)
    expected = (
        r"param \['layers'\]\['mlp'\]\['down_proj'\]\['kernel'\] has shape \[2, 128, 64\], "
        r"the config asks for \[2, 96, 64\]"
    )
    with pytest.raises(CheckpointMismatch, match=expected):
        restore_params(tmp_path / "ckpt" / "params", cfg)
