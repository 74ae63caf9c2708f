"""Prefill throughput of our jitted forward vs transformers (PyTorch) on the same weights and batch.

Prints one JSON object: tokens/s of both (medians over --reps timed runs after a warm-up, the two
implementations alternating so both see the same machine load), their ratio, and the max logit
difference as a check that both computed the same thing.

    python scripts/bench_forward.py                      # ~134M llama, batch 4 x 512, CPU
    python scripts/bench_forward.py --layers 2 --seq 128 # quick
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time

import tyro
from bench_models import model_summary, reference_model, with_shape  # scripts/ is on sys.path


@dataclasses.dataclass
class Bench:
    shape: str = "custom"
    """custom (the sizes below) or smollm2-135m: SmolLM2-135M-Instruct's shape, with its real
    weights once `make smollm2` has converted them (the sizes below are then ignored)."""
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    kv_heads: int = 12
    intermediate: int = 2048
    vocab: int = 32000
    batch: int = 4
    seq: int = 512
    reps: int = 5
    """Timed runs per implementation; the median is reported."""
    dtype: str = "float32"
    torch_attention: str = "sdpa"
    """transformers attention implementation for the reference (sdpa or eager)."""


def interleaved_seconds(first, second, reps: int) -> tuple[list[float], list[float]]:
    """Times `first` and `second` alternately, so that both see the same machine load."""
    first(), second()  # warm-up (compiles ours)
    a, b = [], []
    for _ in range(reps):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return a, b


def gemm_gflops(m: int, k: int, n: int, dtype: str, reps: int = 10) -> dict:
    """[m, k] x [k, n] matmul throughput of XLA (jax.jit) and of torch (MKL), interleaved."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    a = np.random.default_rng(1).standard_normal((m, k), np.float32)
    b = np.random.default_rng(2).standard_normal((k, n), np.float32)
    ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    ta, tb = torch.from_numpy(a).to(getattr(torch, dtype)), torch.from_numpy(b).to(getattr(torch, dtype))
    matmul = jax.jit(jnp.matmul)
    xla, mkl = interleaved_seconds(lambda: matmul(ja, jb).block_until_ready(), lambda: ta @ tb, reps)
    flops = 2 * m * k * n
    return {
        "shape": [m, k, n],
        "xla": flops / statistics.median(xla) / 1e9,
        "torch": flops / statistics.median(mkl) / 1e9,
    }


def main(args: Bench) -> dict:
    args = with_shape(args)
    import jax
    import numpy as np
    import torch
    import transformers

    from clarify_jax import hf, model

    reference, weights = reference_model(args, args.seq)
    reference = reference.eval()
    reference.config._attn_implementation = args.torch_attention
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        cfg, params = hf.load_pretrained(tmp, dtype=args.dtype)
    torch_dtype = getattr(torch, args.dtype)
    reference = reference.to(torch_dtype)
    torch_tokens = torch.as_tensor(tokens, dtype=torch.long)
    device_tokens = jax.device_put(tokens)

    def ours():
        return model.forward(cfg, params, device_tokens).block_until_ready()

    def theirs():
        with torch.inference_mode():
            return reference(torch_tokens).logits

    start = time.perf_counter()
    ours()  # compiles
    first_call_s = time.perf_counter() - start
    ours_times, theirs_times = interleaved_seconds(ours, theirs, args.reps)
    gemm = gemm_gflops(args.batch * args.seq, args.hidden, args.intermediate, args.dtype)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    difference = float(np.abs(np.asarray(ours(), np.float32) - theirs().float().numpy()).max())
    n_tokens = args.batch * args.seq
    result = {
        "benchmark": "prefill_forward",
        "model": model_summary(args, weights, model.count_params(params)),
        "batch": args.batch,
        "seq": args.seq,
        "dtype": args.dtype,
        "reps": args.reps,
        "ours": {
            "median_s": ours_s,
            "tokens_per_s": n_tokens / ours_s,
            "backend": jax.default_backend(),
            "jax": jax.__version__,
            # The first call less a timed one: tracing and XLA compilation, not in median_s.
            "compile_s": first_call_s - ours_s,
        },
        "reference": {
            "median_s": theirs_s,
            "tokens_per_s": n_tokens / theirs_s,
            "impl": f"transformers {transformers.__version__} ({args.torch_attention}), "
            f"torch {torch.__version__}",
            "threads": torch.get_num_threads(),
        },
        "ratio_ours_over_reference": theirs_s / ours_s,
        "ratio_per_pair_median": statistics.median(t / o for o, t in zip(ours_times, theirs_times)),
        "max_abs_logit_difference": difference,
        # The largest matmul of a layer alone, both libraries: what bounds the ratio above.
        "gemm_gflops": gemm,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(tyro.cli(Bench))
