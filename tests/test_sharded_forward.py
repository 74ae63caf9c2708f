"""The forward on a fake 8-device mesh (data=2, fsdp=2, tensor=2) equals one device's."""

import jax
import numpy as np
import pytest

from clarify_jax import hf, model
from clarify_jax.parallel.mesh import MeshError, make_mesh, parse_mesh_shape
from clarify_jax.parallel.sharding import LogicalSharding


def test_mesh_spec_fills_and_rejects():
    assert parse_mesh_shape("1,-1,1", 8) == (1, 8, 1)
    assert parse_mesh_shape("2,2,2", 8) == (2, 2, 2)
    with pytest.raises(MeshError, match="does not divide"):
        parse_mesh_shape("3,-1,1", 8)
    with pytest.raises(MeshError, match="present"):
        parse_mesh_shape("2,2,1", 8)


@pytest.mark.parametrize("variant", ["llama", "qwen2"])
def test_sharded_forward_equals_single_device(tiny_models, variant):
    assert jax.device_count() == 8
    path = tiny_models(variant)
    tokens = np.random.default_rng(2).integers(0, 256, (4, 12)).astype(np.int32)
    cfg, params = hf.load_pretrained(path)
    single = np.asarray(model.forward(cfg, params, tokens))

    sharding = LogicalSharding(make_mesh("2,2,2"))
    _, sharded_params = hf.load_pretrained(path, sharding=sharding)
    q = sharded_params["layers"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (2, 32, 2, 16)
    batch = jax.device_put(tokens, sharding.named(("batch", "length")))
    logits = model.forward(cfg, sharded_params, batch, sharding=sharding)
    assert logits.sharding.spec == sharding.spec(("batch", "length", "vocab"))
    assert np.abs(np.asarray(logits) - single).max() <= 1e-5


def test_axes_that_do_not_divide_are_replicated(tiny_models):
    """2 kv heads on tensor=4: the kv-head dimension is replicated, the rest still sharded."""
    path = tiny_models("llama")
    tokens = np.random.default_rng(2).integers(0, 256, (2, 12)).astype(np.int32)
    cfg, params = hf.load_pretrained(path)
    sharding = LogicalSharding(make_mesh("1,2,4"))
    _, sharded_params = hf.load_pretrained(path, sharding=sharding)
    attn = sharded_params["layers"]["self_attn"]
    assert attn["k_proj"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", None, None)
    assert attn["q_proj"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    logits = model.forward(cfg, sharded_params, tokens, sharding=sharding)
    assert np.abs(np.asarray(logits) - np.asarray(model.forward(cfg, params, tokens))).max() <= 1e-5


def test_a_logical_axis_without_a_rule_is_an_error():
    sharding = LogicalSharding(make_mesh("1,-1,1"))
    assert sharding.spec((None, "embed")) == jax.sharding.PartitionSpec(None, "fsdp")
    with pytest.raises(ValueError, match=r"\['embd'\] have no sharding rule"):
        sharding.spec(("batch", "embd"))
