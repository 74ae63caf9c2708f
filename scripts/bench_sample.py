"""Greedy decoding speed of our jitted sampler vs transformers `generate` (PyTorch) on the same weights.

Prints one JSON object with, per batch size: time to first token (a prefill plus one decode step:
`max_new_tokens=1`), decode tokens/s (the new tokens after the first, over the time they added:
batch * (N - 1) / (t(N) - t(1))), both implementations, and their ratio (ours over reference,
above 1 means ours is faster). Each implementation runs in a process of its own, as a user runs it
(`--no-isolate`: both in this one), and is timed there. Medians over --reps rounds, the two taking
turns within each round so that both see the same machine load (ratios are medians of per-round ratios);
whether both produced the same tokens is reported too.

    python scripts/bench_sample.py                           # ~134M llama, prompts of 128, 32 new tokens
    python scripts/bench_sample.py --layers 2 --new-tokens 16 --reps 2   # quick
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
from bench_process import open_side


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
    prompt: int = 128
    """Prompt length (all prompts of a batch have it, so transformers needs no padding)."""
    new_tokens: int = 32
    batches: tuple[int, ...] = (1, 16)
    reps: int = 3
    """Timed runs per implementation and measurement; the median is reported."""
    dtype: str = "float32"
    torch_attention: str = "sdpa"
    torch_threads: int | None = None
    """Threads of the reference (default: torch's, one per core). On a loaded machine torch's
    OpenMP barriers wait on descheduled threads; 1 thread can then be faster."""
    unstack_layers: bool | None = None
    """Decode over per-layer copies of the weights instead of the layer scan (default: the
    Sampler's, on CPU only)."""
    isolate: bool = True
    """Build ours and the reference each in a process of its own (scripts/bench_process.py), as a
    user runs either; --no-isolate builds both in this process."""


class OursSampler:
    """Our side: the project's Sampler on the weights in `model_dir` (built in a process of its own
    unless --no-isolate)."""

    def __init__(self, args: Bench, model_dir: str):
        import jax

        from clarify_jax import hf, model
        from clarify_jax.sample import Sampler

        cfg, params = hf.load_pretrained(model_dir, dtype=args.dtype)
        self.params = model.count_params(params)
        self.sampler = Sampler(cfg, params, buckets=(args.prompt,), unstack_layers=args.unstack_layers)
        on_cpu = jax.default_backend() == "cpu"
        unstacked = args.unstack_layers if args.unstack_layers is not None else on_cpu
        self.impl = f"clarify_jax Sampler, jax {jax.__version__} ({jax.default_backend()}), decoding " + (
            "over per-layer weights" if unstacked else "with the layer scan"
        )

    def describe(self) -> dict:
        return {"params": self.params, "impl": self.impl}

    def generate(self, prompts, new_tokens: int):
        import numpy as np

        return np.asarray(self.sampler.sample(prompts.tolist(), max_new_tokens=new_tokens).tokens)[:, 0]


class ReferenceGenerate:
    """The reference: transformers `generate` on the weights in `model_dir` (built in a process of
    its own unless --no-isolate)."""

    def __init__(self, args: Bench, model_dir: str):
        import torch
        import transformers

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        dtype = getattr(torch, args.dtype)
        self.model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        self.model.config._attn_implementation = args.torch_attention
        # No EOS: every run produces exactly the tokens asked for.
        self.model.config.eos_token_id = self.model.generation_config.eos_token_id = None
        self.impl = (
            f"transformers {transformers.__version__} generate ({args.torch_attention}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads"
        )

    def describe(self) -> dict:
        return {"impl": self.impl}

    def generate(self, prompts, new_tokens: int):
        import torch

        tokens = torch.as_tensor(prompts, dtype=torch.long)
        with torch.inference_mode():
            out = self.model.generate(
                tokens,
                attention_mask=torch.ones_like(tokens),
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
            )
        return out[:, prompts.shape[1] :].numpy()


def main(args: Bench) -> dict:
    args = with_shape(args)
    import numpy as np

    reference, weights = reference_model(args, args.prompt + args.new_tokens)
    with tempfile.TemporaryDirectory() as model_dir, contextlib.ExitStack() as sides:
        reference.save_pretrained(model_dir)
        del reference
        ours = sides.enter_context(open_side(args.isolate, "ours", OursSampler, args, model_dir))
        theirs = sides.enter_context(open_side(args.isolate, "reference", ReferenceGenerate, args, model_dir))
        runs = {"ours": ours, "reference": theirs}
        results = {}
        for batch in args.batches:
            prompts = np.random.default_rng(batch).integers(3, args.vocab, (batch, args.prompt))
            # compiles the prefill and the decode loop
            first_tokens, first_call_s = ours.call_timed("generate", prompts, args.new_tokens)
            same = (
                first_tokens == theirs.call("generate", prompts, args.new_tokens)
            ).all()  # also the warm-up
            ours.call("generate", prompts, 1), theirs.call("generate", prompts, 1)
            times = {name: {"first": [], "full": []} for name in runs}
            for _ in range(args.reps):  # alternating, so that both see the same machine load
                for n, key in ((1, "first"), (args.new_tokens, "full")):
                    for name, side in runs.items():
                        times[name][key].append(side.call_timed("generate", prompts, n)[1])
            row = {}
            for name, t in times.items():
                t["decode"] = decode = [
                    batch * (args.new_tokens - 1) / (full - first)
                    for first, full in zip(t["first"], t["full"])
                ]
                row[name] = {
                    "time_to_first_token_s": statistics.median(t["first"]),
                    "decode_tokens_per_s": statistics.median(decode),
                    "total_s": statistics.median(t["full"]),
                }
            mine, ref = times["ours"], times["reference"]
            row["ratio_decode_tokens_per_s"] = statistics.median(
                o / r for o, r in zip(mine["decode"], ref["decode"])
            )
            row["ratio_time_to_first_token"] = statistics.median(
                r / o for o, r in zip(mine["first"], ref["first"])
            )
            row["same_tokens"] = bool(same)
            # The first call less a timed one: tracing and XLA compilation (a new batch size compiles anew).
            row["ours"]["compile_s"] = first_call_s - row["ours"]["total_s"]
            results[f"batch_{batch}"] = row
        ours_info, reference_info = ours.call("describe"), theirs.call("describe")
    result = {
        "benchmark": "greedy_sampling",
        "model": model_summary(args, weights, ours_info["params"]),
        "prompt": args.prompt,
        "new_tokens": args.new_tokens,
        "dtype": args.dtype,
        "reps": args.reps,
        "isolated": args.isolate,
        "note": "ratios: medians over rounds of ours/reference decode tokens/s and of reference/ours "
        "time to first token (above 1: ours faster)",
        **results,
        "ours_impl": ours_info["impl"],
        "reference_impl": reference_info["impl"],
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1_5_15_min": os.getloadavg(),
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(tyro.cli(Bench))
