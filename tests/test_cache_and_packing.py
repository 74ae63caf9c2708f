"""KV-cache decoding and packed rows give the plain forward's logits."""

import jax.numpy as jnp
import numpy as np
import pytest

from clarify_jax import hf, model

TOKENS = np.random.default_rng(1).integers(0, 256, (2, 12)).astype(np.int32)


@pytest.mark.parametrize("unstacked", [False, True], ids=["layer-scan", "unstacked-layers"])
@pytest.mark.parametrize("variant", ["llama", "mistral"])
def test_token_by_token_decoding_equals_full_forward(tiny_models, variant, unstacked):
    """A prefill over the stacked layers (one scan), then decoding over the stacked layers or, as
    the sampler does on CPU, over per-layer weights and per-layer cache buffers."""
    cfg, params = hf.load_pretrained(tiny_models(variant))
    full = np.asarray(model.forward(cfg, params, TOKENS))
    cache = model.KVCache.empty(cfg, batch=2, slots=16)
    logits, cache = model.forward_with_cache(cfg, params, jnp.asarray(TOKENS[:, :5]), cache)
    if unstacked:
        params, cache = model.unstack_layers(params), cache.unstack()
        assert len(params["layers"]) == len(cache.k) == cfg.num_layers
        assert np.abs(np.asarray(model.forward(cfg, params, TOKENS)) - full).max() <= 1e-5
    steps = [np.asarray(logits)]
    for t in range(5, 12):
        logits, cache = model.forward_with_cache(cfg, params, jnp.asarray(TOKENS[:, t : t + 1]), cache)
        steps.append(np.asarray(logits))
    assert int(cache.index) == 12 and cache.unstacked == unstacked
    assert np.abs(np.concatenate(steps, axis=1) - full).max() <= 1e-5


def test_ragged_batch_decodes_each_row_as_if_alone(tiny_models):
    """Right-padded prompts of lengths 6 and 3 share slots; each row keeps its own positions."""
    cfg, params = hf.load_pretrained(tiny_models("mistral"))
    lengths = np.array([6, 3])
    prompt = np.where(np.arange(6)[None] < lengths[:, None], TOKENS[:, :6], 0).astype(np.int32)
    segment = (np.arange(6)[None] < lengths[:, None]).astype(np.int32)
    cache = model.KVCache.empty(cfg, batch=2, slots=12)
    logits, cache = model.forward_with_cache(
        cfg, params, jnp.asarray(prompt), cache, segment_ids=jnp.asarray(segment)
    )
    continuation = TOKENS[:, 6:10]
    outputs = []
    for step in range(continuation.shape[1]):
        positions = (lengths + step)[:, None].astype(np.int32)
        out, cache = model.forward_with_cache(
            cfg,
            params,
            jnp.asarray(continuation[:, step : step + 1]),
            cache,
            positions=jnp.asarray(positions),
        )
        outputs.append(np.asarray(out[:, 0]))
    for row, n in enumerate(lengths):
        alone = np.concatenate([TOKENS[row, :n], continuation[row]])[None]
        expected = np.asarray(model.forward(cfg, params, alone))[0]
        assert np.abs(np.asarray(logits)[row, n - 1] - expected[n - 1]).max() <= 1e-5
        decoded = np.stack([o[row] for o in outputs])
        assert np.abs(decoded - expected[n:]).max() <= 1e-5


@pytest.mark.parametrize("variant", ["llama", "mistral"])
def test_packed_row_equals_each_sequence_alone(tiny_models, variant):
    cfg, params = hf.load_pretrained(tiny_models(variant))
    first, second = TOKENS[0, :7], TOKENS[1, :5]
    row = np.concatenate([first, second, np.zeros(3, np.int32)])[None]
    segments = np.array([[1] * 7 + [2] * 5 + [0] * 3])
    positions = np.array([list(range(7)) + list(range(5)) + [0] * 3])
    packed = np.asarray(model.forward(cfg, params, row, positions=positions, segment_ids=segments))[0]
    alone_first = np.asarray(model.forward(cfg, params, first[None]))[0]
    alone_second = np.asarray(model.forward(cfg, params, second[None]))[0]
    assert np.abs(packed[:7] - alone_first).max() <= 1e-5
    assert np.abs(packed[7:12] - alone_second).max() <= 1e-5
    assert np.isfinite(packed).all()  # padding rows attend to nothing but stay finite


def test_blocked_causal_attention_equals_plain_on_packed_rows():
    """Three packed segments over 300 tokens: every query block sees exactly the keys it should."""
    from clarify_jax.model.layers import attention_mask, causal_attention, dot_product_attention

    rng = np.random.default_rng(6)
    q = jnp.asarray(rng.standard_normal((2, 300, 4, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.standard_normal((2, 300, 2, 16)), jnp.float32) for _ in range(2))
    lengths = [(120, 150, 30), (299, 1, 0)]
    segments = np.array([np.repeat(np.arange(1, 4), n) for n in lengths])
    positions = np.array([np.concatenate([np.arange(n) for n in row]) for row in lengths])
    segments[1, -1:] = 0  # padding at the end of the second row
    mask = attention_mask(
        jnp.asarray(positions), jnp.asarray(segments), jnp.asarray(positions), jnp.asarray(segments), None
    )
    plain = dot_product_attention(q, k, v, mask)
    blocked = causal_attention(q, k, v, mask, block=128)
    assert np.abs(np.asarray(blocked) - np.asarray(plain)).max() <= 1e-5


def test_cache_rows_repeat_in_place_and_padding_stays_empty(tiny_models):
    """Row b becomes rows b*n .. b*n+n-1 in every field with a batch axis; padded tokens record no
    position, so no later token attends to them."""
    cfg, _ = hf.load_pretrained(tiny_models("llama"))
    cache = model.KVCache.empty(cfg, batch=2, slots=6)
    positions = jnp.asarray([[0, 1, 2], [0, 1, 2]], jnp.int32)
    cache = cache.record_positions(positions, jnp.asarray([[True, True, True], [True, False, False]]))
    cache = cache.replace(k=cache.k.at[:, 1].set(1.0)).advance(3)
    repeated = cache.repeat_rows(3)
    assert repeated.k.shape[1] == 6 and int(repeated.index) == 3
    assert np.asarray(repeated.k[0, :, 0, 0, 0]).tolist() == [0, 0, 0, 1, 1, 1]
    assert np.asarray(repeated.pos).tolist() == [[0, 1, 2, -1, -1, -1]] * 3 + [[0, -1, -1, -1, -1, -1]] * 3
    assert np.asarray(repeated.occupied()).sum() == 3 * 3 + 3 * 1
    per_layer = cache.unstack().repeat_rows(3)  # the same per layer, on per-layer buffers
    assert len(per_layer.k) == cfg.num_layers and per_layer.k[0].shape == repeated.k.shape[1:]
    for layer in range(cfg.num_layers):
        assert np.array_equal(per_layer.k[layer], repeated.k[layer])
        assert np.array_equal(per_layer.v[layer], repeated.v[layer])
    assert np.array_equal(per_layer.pos, repeated.pos)


def test_a_prefill_as_wide_as_its_prompt_then_room_decodes_like_one_wide_cache(tiny_models):
    """The sampler prefills into a cache of the prompt's width and adds the new tokens' slots after
    (`with_room`): the added slots are empty, the written ones unchanged, and decoding on gives
    the plain forward's logits."""
    cfg, params = hf.load_pretrained(tiny_models("llama"))
    full = np.asarray(model.forward(cfg, params, TOKENS))
    narrow = model.KVCache.empty(cfg, batch=2, slots=5)
    logits, narrow = model.forward_with_cache(cfg, params, jnp.asarray(TOKENS[:, :5]), narrow)
    cache = narrow.with_room(7)
    assert cache.slots == 12 and int(cache.index) == 5
    assert np.array_equal(cache.k[:, :, :, :5], narrow.k) and np.array_equal(cache.v[:, :, :, :5], narrow.v)
    assert not np.asarray(cache.k[:, :, :, 5:]).any() and (np.asarray(cache.pos[:, 5:]) == -1).all()
    steps = [np.asarray(logits)]
    for t in range(5, 12):
        logits, cache = model.forward_with_cache(cfg, params, jnp.asarray(TOKENS[:, t : t + 1]), cache)
        steps.append(np.asarray(logits))
    assert np.abs(np.concatenate(steps, axis=1) - full).max() <= 1e-5
