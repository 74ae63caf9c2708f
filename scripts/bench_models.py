"""The benchmarks' reference model: a random llama of the sizes on the command line, or the shape of
SmolLM2-135M-Instruct (`--shape smollm2-135m`: 30 layers of width 576, 9 query and 3 KV heads, tied
embeddings, vocabulary 49,152), with its real weights once `make smollm2` has converted them and
random ones of that shape otherwise, or Llama-3.2-1B's shape with random weights (`--shape
llama3.2-1b`, the accelerator checks' default). Both sides load the same weights: the benchmark
saves the reference and loads ours from that directory.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

SHAPES = {
    "smollm2-135m": dict(hidden=576, layers=30, heads=9, kv_heads=3, intermediate=1536, vocab=49152),
    # Llama-3.2-1B's shape (1.24B parameters, tied embeddings): the accelerator checks' ~1B llama.
    "llama3.2-1b": dict(hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192, vocab=128256),
}


def with_shape(args):
    """`args` with the sizes of `args.shape` (unchanged for "custom")."""
    if args.shape == "custom":
        return args
    if args.shape not in SHAPES:
        raise SystemExit(f"--shape must be custom or one of {sorted(SHAPES)}, got {args.shape!r}")
    return dataclasses.replace(args, **SHAPES[args.shape])


def model_summary(args, weights: str, params: int) -> dict:
    """The JSON's "model" entry: the shape, where the weights came from, and the sizes."""
    sizes = ("hidden", "layers", "vocab", "heads", "kv_heads", "intermediate")
    return {"shape": args.shape, "weights": weights, "params": params, **{k: getattr(args, k) for k in sizes}}


def reference_model(args, max_positions: int = 2048):
    """(transformers LlamaForCausalLM in float32, "smollm2" or "random"): the weights it holds."""
    import torch
    import transformers

    if args.shape == "smollm2-135m":
        real = _smollm2_hf_dir()
        if real is not None:
            reference = transformers.LlamaForCausalLM.from_pretrained(real, dtype=torch.float32)
            # No EOS: a decoding benchmark produces exactly the tokens it asks for, on both sides.
            reference.config.eos_token_id = reference.generation_config.eos_token_id = None
            return reference, "smollm2"
    config = transformers.LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=max(2048, max_positions),
        tie_word_embeddings=args.shape != "custom",
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config), "random"


def training_batch(batch: int, seq: int, vocab: int, first_target: int) -> dict:
    """Random tokens, one sequence per row; positions from `first_target` on (but the last)
    predict the next token, the first half of them as clarify targets, the rest as code targets."""
    import numpy as np

    tokens = np.random.default_rng(0).integers(0, vocab, (batch, seq)).astype(np.int32)
    position = np.arange(seq)
    has_next = position < seq - 1
    split = (first_target + seq) // 2
    clarify = (position >= first_target) & (position < split) & has_next
    code = (position >= split) & has_next
    return {
        "tokens": tokens,
        "segment_ids": np.ones((batch, seq), np.int32),
        "positions": np.broadcast_to(position.astype(np.int32), (batch, seq)).copy(),
        "targets": np.where(has_next, np.roll(tokens, -1, axis=1), 0).astype(np.int32),
        "clarify_mask": np.broadcast_to(clarify.astype(np.float32), (batch, seq)).copy(),
        "code_mask": np.broadcast_to(code.astype(np.float32), (batch, seq)).copy(),
    }


def torch_joint_loss(logits, targets, masks, weights):
    """Our joint loss in torch: sum over kinds of weight x mean cross-entropy over the kind's mask."""
    import torch.nn.functional as F

    cross_entropy = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    cross_entropy = cross_entropy.view_as(targets)
    return sum(w * (cross_entropy * m).sum() / m.sum().clamp(min=1.0) for w, m in zip(weights, masks))


def _smollm2_hf_dir() -> Path | None:
    """SmolLM2-135M-Instruct exported as a Hugging Face directory, when `make smollm2` has
    converted it (None otherwise: the benchmark then uses random weights of its shape)."""
    from clarify_jax.checkpoints.convert import export_to_hf
    from clarify_jax.checkpoints.smollm2 import default_cache_dir

    if not (default_cache_dir() / "config.json").exists():
        return None
    out = Path(tempfile.mkdtemp(prefix="bench-smollm2-")) / "hf"
    export_to_hf(default_cache_dir(), out, progress=False)
    return out
