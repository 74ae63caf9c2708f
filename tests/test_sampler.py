"""The jitted sampler: greedy parity with transformers `generate`, token choice, stops, padding
buckets, seeds, n samples, and a sharded run. Samplers and their compiled shapes are shared
through module-scoped fixtures; most tests reuse the greedy run's compiled function."""

import jax
import numpy as np
import pytest
import torch
import transformers

from clarify_jax import hf
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.sample import Sampler, SamplerError, TokenChoice, bucket_length, choose_tokens

MAX_NEW = 12
BUCKETS = (8, 16, 32)
_rng = np.random.default_rng(3)
PROMPTS = [_rng.integers(3, 256, n).tolist() for n in (3, 17, 9)]  # short and long, unsorted


class IdTokenizer:
    """Decodes id i as "<i>", so the expected text of any ids is plain to compute."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f"<{i}>" for i in ids)


def hf_greedy(model_dir, prompts, max_new_tokens=MAX_NEW):
    """transformers' greedy continuation of each prompt alone (no padding), cut before its EOS."""
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    eos = reference.generation_config.eos_token_id
    out = []
    for prompt in prompts:
        tokens = torch.tensor([prompt])
        with torch.no_grad():
            ids = reference.generate(
                tokens, attention_mask=torch.ones_like(tokens), do_sample=False, max_new_tokens=max_new_tokens
            )[0, len(prompt) :].tolist()
        out.append(ids[: ids.index(eos)] if eos in ids else ids)
    return out


@pytest.fixture(scope="module")
def llama(tiny_models):
    path = tiny_models("llama")
    cfg, params = hf.load_pretrained(path)
    return path, cfg, params


@pytest.fixture(scope="module")
def sampler(llama):
    _, cfg, params = llama
    return Sampler(cfg, params, IdTokenizer(), buckets=BUCKETS)


@pytest.fixture(scope="module")
def greedy(sampler):
    """Greedy tokens [prompt] of the bucketed batch (prefill width 16, padded to 4 rows)."""
    out = sampler.sample(PROMPTS, max_new_tokens=MAX_NEW)
    assert all(len(row) == 1 for row in out.completions)
    return [row[0].tokens for row in out.completions]


def test_greedy_equals_transformers_generate(llama, sampler, greedy):
    expected = hf_greedy(llama[0], PROMPTS)
    assert greedy == expected
    out = sampler.sample(PROMPTS, max_new_tokens=MAX_NEW)
    assert [row[0].finish_reason for row in out.completions] == [
        "length" if len(ids) == MAX_NEW else "eos" for ids in expected
    ]


@pytest.mark.parametrize("variant", ["qwen2_tied", "mistral"])
def test_greedy_parity_other_families(tiny_models, variant):
    """Qwen2 (q/k/v bias, tied head) and Mistral (sliding window 5, shorter than the prompts)."""
    cfg, params = hf.load_pretrained(tiny_models(variant))
    out = Sampler(cfg, params, buckets=BUCKETS).sample(PROMPTS, max_new_tokens=MAX_NEW)
    assert out.tokens == [[ids] for ids in hf_greedy(tiny_models(variant), PROMPTS)]


def test_top_k_one_equals_greedy_at_temperature_one(sampler, greedy):
    """Through the sampling path (temperature, key, the prefill repeated for two samples); the
    top-p rule itself is checked on known logits below."""
    out = sampler.sample(
        PROMPTS, max_new_tokens=MAX_NEW, temperature=1.0, top_k=1, num_samples=2, rng=jax.random.key(5)
    )
    assert out.tokens == [[ids, ids] for ids in greedy]


def _first(ids, token):
    return ids.index(token) if token in ids else None


def test_stop_ids_cut_and_end_the_loop_early(sampler, greedy):
    # One stop id from each row, so that every row stops and the loop ends before MAX_NEW steps.
    stops = (greedy[0][5], greedy[1][2], greedy[2][7])
    out = sampler.sample(PROMPTS, max_new_tokens=MAX_NEW, stop_token_ids=stops)
    cuts = [min(i for i in (_first(ids, t) for t in stops) if i is not None) for ids in greedy]
    assert out.tokens == [[ids[:cut]] for ids, cut in zip(greedy, cuts)]
    assert [row[0].finish_reason for row in out.completions] == ["eos"] * 3
    assert [row[0].text for row in out.completions] == [
        "".join(f"<{t}>" for t in ids[:cut]) for ids, cut in zip(greedy, cuts)
    ]
    assert out.steps == max(cuts) + 1 < MAX_NEW


def test_stop_strings_cut_text_and_tokens(sampler, greedy):
    row = greedy[2]
    assert row[4] not in row[:4]
    single = f"<{row[4]}>"
    spanning = f"{row[7]}><{row[8]}"  # starts and ends inside tokens
    out = sampler.sample(PROMPTS, max_new_tokens=MAX_NEW, stop=(spanning, single))

    def text_of(ids):
        return "".join(f"<{t}>" for t in ids)

    for ids, (completion,) in zip(greedy, out.completions):
        text = text_of(ids)
        found = [i for i in (text.find(single), text.find(spanning)) if i >= 0]
        if not found:
            assert (completion.tokens, completion.text, completion.finish_reason) == (ids, text, "length")
            continue
        at = min(found)
        # The shortest token prefix whose text holds the stop string.
        n = next(
            k for k in range(1, len(ids) + 1) if single in text_of(ids[:k]) or spanning in text_of(ids[:k])
        )
        assert (completion.tokens, completion.text, completion.finish_reason) == (ids[:n], text[:at], "stop")
    assert out.completions[2][0].text == text_of(row[:4])
    assert out.completions[2][0].tokens == row[:5]


def test_bucketed_padding_equals_exact_length(llama, greedy):
    """`greedy` prefilled the 3-token prompt into 16 slots beside longer rows; alone, with no
    buckets, it prefills exactly 2 slots in a batch of one."""
    _, cfg, params = llama
    alone = Sampler(cfg, params, buckets=()).sample([PROMPTS[0]], max_new_tokens=MAX_NEW)
    assert alone.tokens == [[greedy[0]]]


def test_seeds_and_samples_per_prompt(sampler):
    def run(seed):
        return sampler.sample(PROMPTS, max_new_tokens=MAX_NEW, temperature=1.0, num_samples=2, rng=seed)

    out = run(1)
    first, again, other = out.tokens, run(1).tokens, run(2).tokens
    assert first == again
    assert [len(row) for row in first] == [2, 2, 2]
    assert all(
        (len(c.tokens) == MAX_NEW) == (c.finish_reason == "length") for row in out.completions for c in row
    )
    assert first != other
    assert all(row[0] != row[1] for row in first)  # the samples of one prompt differ


def test_token_choice_rules():
    logits = jax.numpy.log(jax.numpy.asarray([[0.5, 0.3, 0.15, 0.05]] * 4000))
    key, temperature = jax.random.key(0), jax.numpy.float32(1.0)

    def draw(top_k=0, top_p=1.0):
        choice = TokenChoice(greedy=False, top_k=top_k, nucleus=top_p < 1)
        return np.asarray(
            jax.jit(choose_tokens, static_argnums=4)(
                logits, key, temperature, jax.numpy.float32(top_p), choice
            )
        )

    assert np.bincount(draw(top_k=2), minlength=4)[2:].sum() == 0
    assert set(np.unique(draw(top_p=0.7))) == {0, 1}  # 0.5 < 0.7 needs the second token, not a third
    assert set(np.unique(draw(top_p=0.5))) == {0}
    frequencies = np.bincount(draw(), minlength=4) / 4000
    assert np.abs(frequencies - [0.5, 0.3, 0.15, 0.05]).max() < 0.03
    greedy = TokenChoice(greedy=True, top_k=0, nucleus=False)
    assert np.asarray(choose_tokens(logits[:2], key, temperature, temperature, greedy)).tolist() == [0, 0]


def test_sharded_run_equals_unsharded(llama, greedy):
    path, cfg, _ = llama
    sharding = LogicalSharding(make_mesh("2,2,2"))
    _, params = hf.load_pretrained(path, sharding=sharding)
    assert len(params["layers"]["self_attn"]["q_proj"]["kernel"].sharding.device_set) == 8
    sharded = Sampler(cfg, params, buckets=BUCKETS, sharding=sharding)
    assert sharded.sample(PROMPTS, max_new_tokens=MAX_NEW).tokens == [[ids] for ids in greedy]


def test_layer_scan_equals_unstacked_layers(llama, greedy):
    """On CPU the sampler decodes over per-layer copies of the weights by default; the layer scan
    over the stacked weights (the default on other backends) gives the same tokens."""
    _, cfg, params = llama
    scan = Sampler(cfg, params, buckets=BUCKETS, unstack_layers=False)
    assert scan.sample(PROMPTS, max_new_tokens=MAX_NEW).tokens == [[ids] for ids in greedy]


@pytest.mark.parametrize("ynn", [True, False])
def test_decode_loop_with_and_without_ynnpack_fusions(llama, greedy, monkeypatch, ynn):
    """On CPU the decode loop's YNNPACK setting depends on the CPU (AVX-512 or not) and the rows;
    either setting, whichever this machine would pick, gives the same tokens."""
    from clarify_jax.sample import sampler as sampler_module

    options = {} if ynn else {"xla_cpu_experimental_ynn_fusion_type": ""}
    decode = jax.jit(sampler_module.DecodeLoop.decode, static_argnums=0, compiler_options=options)
    calls = []
    for name in ("_decode", "_decode_without_ynn"):
        monkeypatch.setattr(sampler_module, name, lambda *a: calls.append(1) or decode(*a))
    _, cfg, params = llama
    fresh = Sampler(cfg, params, buckets=BUCKETS)
    assert fresh.sample(PROMPTS, max_new_tokens=MAX_NEW).tokens == [[ids] for ids in greedy]
    assert calls == [1]  # the patched loop ran, not the module's own


def test_ynnpack_choice_by_cpu_and_rows(llama, monkeypatch):
    """On an AVX2-only CPU the loop drops the fusions from 8 rows up (4 prompts pad to 4 rows, 5 to
    8); with AVX-512 it keeps them at every width."""
    from clarify_jax.sample import sampler as sampler_module

    picked = []
    for name in ("_decode", "_decode_without_ynn"):
        real = getattr(sampler_module, name)
        monkeypatch.setattr(sampler_module, name, lambda *a, n=name, f=real: picked.append(n) or f(*a))
    _, cfg, params = llama
    fresh = Sampler(cfg, params, buckets=BUCKETS)
    for avx2_only in (True, False):
        monkeypatch.setattr(sampler_module, "_AVX2_ONLY", avx2_only)
        for n in (4, 5):
            fresh.sample([PROMPTS[0]] * n, max_new_tokens=2)
    assert picked == ["_decode", "_decode_without_ynn", "_decode", "_decode"]


def test_bad_inputs_are_named(sampler):
    with pytest.raises(SamplerError, match="prompt 1 is empty"):
        sampler.sample([[5], []], max_new_tokens=MAX_NEW)
    with pytest.raises(SamplerError, match=r"prompt 0 has 500 tokens; with max_new_tokens=20 it needs 520"):
        sampler.sample([[5] * 500], max_new_tokens=20)
    with pytest.raises(SamplerError, match=r"outside the vocabulary \[0, 256\)"):
        sampler.sample([[5, 256]], max_new_tokens=MAX_NEW)
    with pytest.raises(SamplerError, match="top_p must be in"):
        sampler.sample([[5]], top_p=0.0)
    with pytest.raises(SamplerError, match="need a tokenizer"):
        Sampler(sampler.cfg, sampler.params).sample([[5]], stop=("x",))
    assert sampler.sample([]).completions == []


def test_bucket_length():
    assert bucket_length(5, (8, 16), limit=100) == 8
    assert bucket_length(16, (8, 16), limit=100) == 16
    assert bucket_length(17, (8, 16), limit=100) == 17  # longer than every bucket: its own shape
    assert bucket_length(5, (8, 16), limit=6) == 6  # a bucket never outgrows the cache
    assert bucket_length(0, (), limit=10) == 1
