"""`make demo-roundtrip`: the Hugging Face round trip on the CPU, checked against transformers.

1. build a small random Llama-architecture model with transformers and save it as an HF directory;
2. `clarify-jax convert` it to an orbax params checkpoint;
3. `clarify-jax export` the checkpoint back to an HF directory;
4. reload the export in transformers and compare logits: original vs ours vs exported;
5. greedy-decode with our KV cache and with transformers' generate, token for token.

Synthesis, training and evaluation join this demo as their issues land.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from clarify_jax import hf, model  # noqa: E402

OUT = Path("demo_out") / "roundtrip"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def cli(*args) -> None:
    command = [sys.executable, "-m", "clarify_jax.cli", *map(str, args)]
    print("$ clarify-jax " + " ".join(map(str, args)), flush=True)
    subprocess.run(command, check=True)


def greedy_with_cache(cfg, params, prompt: np.ndarray, new_tokens: int) -> list[int]:
    cache = model.KVCache.empty(cfg, batch=1, slots=prompt.shape[1] + new_tokens)
    logits, cache = model.forward_with_cache(cfg, params, jnp.asarray(prompt), cache)
    out = []
    for _ in range(new_tokens):
        token = int(jnp.argmax(logits[0, -1]))
        out.append(token)
        logits, cache = model.forward_with_cache(cfg, params, jnp.asarray([[token]], jnp.int32), cache)
    return out


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    step("1. a random Llama-architecture model (4 layers, hidden 256, GQA 8/4 heads), saved by transformers")
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        rope_scaling={"type": "linear", "factor": 4.0},
        rope_theta=100000.0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(config).eval()
    reference.save_pretrained(OUT / "hf_source")
    print(f"saved {OUT / 'hf_source'} ({sum(p.numel() for p in reference.parameters()):,} params)")

    step("2. convert to an orbax params checkpoint")
    cli("convert", "--model", OUT / "hf_source", "--out", OUT / "checkpoint", "--dtype", "float32")

    step("3. export back to a Hugging Face directory")
    cli("export", "--source", OUT / "checkpoint", "--out", OUT / "hf_export", "--max-shard-size", "1MB")

    step("4. logits: transformers (original), ours, transformers (exported)")
    tokens = np.random.default_rng(0).integers(3, 512, (2, 32)).astype(np.int32)
    cfg, params = hf.load_pretrained(OUT / "hf_export")
    ours = np.asarray(model.forward(cfg, params, tokens))
    with torch.no_grad():
        original = reference(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
        exported_model = transformers.AutoModelForCausalLM.from_pretrained(OUT / "hf_export").eval()
        exported = exported_model(torch.as_tensor(tokens, dtype=torch.long)).logits.numpy()
    print(f"max |ours - original|     = {np.abs(ours - original).max():.2e}")
    print(f"max |exported - original| = {np.abs(exported - original).max():.2e}")
    assert np.abs(ours - original).max() <= 1e-4 and np.abs(exported - original).max() <= 1e-6

    step("5. greedy decoding: our KV cache vs transformers generate")
    prompt = tokens[:1, :8]
    ours_ids = greedy_with_cache(cfg, params, prompt, new_tokens=16)
    with torch.no_grad():
        generated = exported_model.generate(
            torch.as_tensor(prompt, dtype=torch.long), do_sample=False, max_new_tokens=16, min_new_tokens=16
        )
    theirs_ids = generated[0, prompt.shape[1] :].tolist()
    print(f"ours:         {ours_ids}\ntransformers: {theirs_ids}")
    assert ours_ids == theirs_ids
    print("\ndemo passed: HF -> orbax -> HF round trip is exact and our model decodes like transformers")


if __name__ == "__main__":
    main()
