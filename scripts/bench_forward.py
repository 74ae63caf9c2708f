"""Prefill throughput of our jitted forward vs transformers (PyTorch) on the same weights and batch.

Prints one JSON object: tokens/s of both (medians over --reps timed runs after a warm-up, the two
implementations alternating so both see the same machine load, each in a process of its own as a
user runs it: `--no-isolate` runs both in this one), their ratio, and the max logit difference as a
check that both computed the same thing.

    python scripts/bench_forward.py                      # ~134M llama, batch 4 x 512, CPU
    python scripts/bench_forward.py --layers 2 --seq 128 # quick
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import statistics
import tempfile

import tyro
from bench_models import model_summary, reference_model, with_shape  # scripts/ is on sys.path
from bench_process import interleaved_seconds, open_side


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
    isolate: bool = True
    """Build ours and the reference each in a process of its own (scripts/bench_process.py), as a
    user runs either; --no-isolate builds both in this process."""


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
    xla, mkl = interleaved_seconds([lambda: matmul(ja, jb).block_until_ready(), lambda: ta @ tb], reps, 1)
    flops = 2 * m * k * n
    return {
        "shape": [m, k, n],
        "xla": flops / statistics.median(xla) / 1e9,
        "torch": flops / statistics.median(mkl) / 1e9,
    }


class OursForward:
    """Our jitted forward on the weights in `model_dir` (in a process of its own unless --no-isolate)."""

    def __init__(self, args: Bench, model_dir: str, tokens):
        import jax

        from clarify_jax import hf

        self.cfg, self.params = hf.load_pretrained(model_dir, dtype=args.dtype)
        self.tokens = jax.device_put(tokens)

    def describe(self) -> dict:
        import jax

        from clarify_jax import model

        return {
            "params": model.count_params(self.params),
            "backend": jax.default_backend(),
            "jax": jax.__version__,
        }

    def run(self):
        from clarify_jax import model

        return model.forward(self.cfg, self.params, self.tokens).block_until_ready()

    def logits(self):
        import numpy as np

        return np.asarray(self.run(), np.float32)


class ReferenceForward:
    """transformers' forward on the weights in `model_dir` (in a process of its own unless --no-isolate)."""

    def __init__(self, args: Bench, model_dir: str, tokens):
        import torch
        import transformers

        dtype = getattr(torch, args.dtype)
        self.model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        self.model.config._attn_implementation = args.torch_attention
        self.tokens = torch.as_tensor(tokens, dtype=torch.long)
        self.impl = (
            f"transformers {transformers.__version__} ({args.torch_attention}), torch {torch.__version__}"
        )

    def describe(self) -> dict:
        import torch

        return {"impl": self.impl, "threads": torch.get_num_threads()}

    def run(self):
        import torch

        with torch.inference_mode():
            return self.model(self.tokens).logits

    def logits(self):
        return self.run().float().numpy()


def main(args: Bench) -> dict:
    args = with_shape(args)
    import numpy as np

    reference, weights = reference_model(args, args.seq)
    tokens = np.random.default_rng(0).integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
    with tempfile.TemporaryDirectory() as model_dir, contextlib.ExitStack() as sides:
        reference.save_pretrained(model_dir)
        del reference
        ours = sides.enter_context(open_side(args.isolate, "ours", OursForward, args, model_dir, tokens))
        theirs = sides.enter_context(
            open_side(args.isolate, "reference", ReferenceForward, args, model_dir, tokens)
        )
        first_call_s = ours.call_timed("run")[1]  # compiles
        runs = [lambda: ours.call_timed("run")[1], lambda: theirs.call_timed("run")[1]]
        ours_times, theirs_times = interleaved_seconds(runs, args.reps, warmup=1)
        difference = float(np.abs(ours.call("logits") - theirs.call("logits")).max())
        ours_info, theirs_info = ours.call("describe"), theirs.call("describe")
    gemm = gemm_gflops(args.batch * args.seq, args.hidden, args.intermediate, args.dtype)
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    n_tokens = args.batch * args.seq
    result = {
        "benchmark": "prefill_forward",
        "model": model_summary(args, weights, ours_info["params"]),
        "batch": args.batch,
        "seq": args.seq,
        "dtype": args.dtype,
        "reps": args.reps,
        "isolated": args.isolate,
        "ours": {
            "median_s": ours_s,
            "tokens_per_s": n_tokens / ours_s,
            "backend": ours_info["backend"],
            "jax": ours_info["jax"],
            # The first call less a timed one: tracing and XLA compilation, not in median_s.
            "compile_s": first_call_s - ours_s,
        },
        "reference": {
            "median_s": theirs_s,
            "tokens_per_s": n_tokens / theirs_s,
            "impl": theirs_info["impl"],
            "threads": theirs_info["threads"],
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
