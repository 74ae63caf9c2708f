"""The accelerator checks in one run: training MFU of a ~1B llama in bf16 and batch-1 decoding
against the memory-bandwidth bound, each against PyTorch on the same chip and the same weights.

Made to run as one short command on a lent GPU (the device image has jax, flax, optax, torch and
transformers, no tyro: plain argparse here), and on a CPU with a tiny model for the tests:

    python3 scripts/bench_gpu.py --out $OUT/gpu.json               # Llama-3.2-1B's shape, bf16
    python scripts/bench_gpu.py --shape custom --hidden 64 --layers 2 --heads 4 --kv-heads 2 \\
        --intermediate 128 --vocab 256 --batch 2 --seq 32 --dtype float32   # a few seconds on a CPU

Both sides start from the same random weights (transformers builds and saves them, ours loads
them). Training: full fine-tuning, parameters in float32, matmuls in --dtype (ours: the compute
dtype; the reference: torch.autocast), the joint loss with every position but the last a target
(first half clarify, second half code), gradient clipping and AdamW (ours: the project's Trainer
and optax; the reference: transformers' LlamaForCausalLM with sdpa attention and fused
torch.optim.AdamW). MFU = training FLOPs per token (`training_flops_per_token`, the same count for
both) x tokens per second / the chip's dense bf16 peak (`peak_flops`; none on CPUs).

Decoding: weights in --dtype, batch 1, greedy; seconds per new token = (t(N) - t(1)) / (N - 1),
ours the project's Sampler, the reference transformers `generate`. The bound is the time to read
every weight once from memory (weight bytes / `peak_memory_bandwidth`), the floor of a batch-1
step; the goal is at most 1.5x of it.

Prints one JSON object (and writes it to --out); medians over --reps timed runs after --warmup.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time

# jax would otherwise take 75% of the GPU's memory at start; torch runs in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# bench_models beside this file, and clarify_jax from this checkout where it is not installed (the
# device image: `python3 scripts/bench_gpu.py` there needs no pip install).
_SCRIPTS = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_SCRIPTS, os.path.dirname(_SCRIPTS)]

from bench_models import (  # noqa: E402
    SHAPES,
    model_summary,
    reference_model,
    torch_joint_loss,
    training_batch,
    with_shape,
)

DEFAULT_SHAPE = "llama3.2-1b"


@dataclasses.dataclass
class Bench:
    shape: str = DEFAULT_SHAPE
    """A shape of bench_models.SHAPES, or custom: the sizes below (which default to that shape's)."""
    hidden: int = SHAPES[DEFAULT_SHAPE]["hidden"]
    layers: int = SHAPES[DEFAULT_SHAPE]["layers"]
    heads: int = SHAPES[DEFAULT_SHAPE]["heads"]
    kv_heads: int = SHAPES[DEFAULT_SHAPE]["kv_heads"]
    intermediate: int = SHAPES[DEFAULT_SHAPE]["intermediate"]
    vocab: int = SHAPES[DEFAULT_SHAPE]["vocab"]
    dtype: str = "bfloat16"
    batch: int = 8
    seq: int = 2048
    prompt: int = 128
    new_tokens: int = 128
    reps: int = 5
    warmup: int = 2
    learning_rate: float = 1e-5
    out: str | None = None


def parse(argv: list[str] | None = None) -> Bench:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Bench):
        flag = "--" + field.name.replace("_", "-")
        kind = int if isinstance(field.default, int) else float if isinstance(field.default, float) else str
        parser.add_argument(flag, type=kind, default=field.default)
    return Bench(**vars(parser.parse_args(argv)))


def timed(fn, reps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def make_batch(args: Bench):
    """Every position but the last a target (first half clarify, second half code), so that the LM
    head runs on every token, as the FLOP count assumes."""
    return training_batch(args.batch, args.seq, args.vocab, first_target=0)


def optimizer_config():
    """AdamW's settings, both sides (norm scales undecayed in both)."""
    from clarify_jax.train.config import OptimizerConfig

    return OptimizerConfig(weight_decay=0.1, clip_norm=1.0, schedule="constant")


def train_ours(args: Bench, model_dir: str) -> dict:
    import jax

    from clarify_jax import hf
    from clarify_jax.parallel.mesh import make_mesh
    from clarify_jax.parallel.sharding import LogicalSharding
    from clarify_jax.train.config import Stage
    from clarify_jax.train.optimizer import make_optimizer
    from clarify_jax.train.step import Trainer, loss_weights

    cfg, params = hf.load_pretrained(model_dir, dtype="float32", compute_dtype=args.dtype)
    stage = Stage(steps=1_000_000, learning_rate=args.learning_rate)
    optimizer, schedule = make_optimizer([stage], optimizer_config())
    trainer = Trainer(cfg, LogicalSharding(make_mesh("1,1,1", jax.devices()[:1])), optimizer, schedule)
    batch = {k: jax.device_put(v, trainer.batch_sharding()) for k, v in make_batch(args).items()}
    weights = loss_weights(1.0, 1.0)
    box = {"state": trainer.init_state(params)}
    del params
    losses = []

    def step():
        box["state"], metrics = trainer.train_step(box["state"], {}, batch, weights)
        losses.append(float(metrics["loss"]))  # waits for the step

    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    times = timed(step, args.reps, max(args.warmup - 1, 0))
    return {
        "impl": f"clarify_jax Trainer.train_step, jax {jax.__version__} ({jax.default_backend()})",
        "times_s": times,
        "compile_s": first_s - statistics.median(times),
        "first_loss": losses[0],
        "cfg": cfg,
    }


def train_reference(args: Bench, model_dir: str, device: str) -> dict:
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).train()
    model.config._attn_implementation = "sdpa"
    opt = optimizer_config()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.learning_rate,
        betas=(opt.b1, opt.b2),
        eps=opt.eps,
        fused=True,
    )
    batch = {k: torch.as_tensor(v).to(device) for k, v in make_batch(args).items()}
    masks = (batch["clarify_mask"], batch["code_mask"])
    losses = []

    def step():
        with torch.autocast(device, dtype=getattr(torch, args.dtype), enabled=args.dtype != "float32"):
            logits = model(input_ids=batch["tokens"].long()).logits
        loss = torch_joint_loss(logits.float(), batch["targets"].long(), masks, (1.0, 1.0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))  # waits for the step

    times = timed(step, args.reps, args.warmup)
    return {
        "impl": f"transformers {transformers.__version__}, torch {torch.__version__}",
        "times_s": times,
        "first_loss": losses[0],
    }


def decode_ours(args: Bench, model_dir: str, prompt) -> dict:
    """Both layouts of the decode loop: the layer scan over stacked weights (the default off CPU)
    and per-layer copies (the CPU default), whose scan-free loop may read the weights in place."""
    import jax

    from clarify_jax import hf, model
    from clarify_jax.sample import Sampler

    cfg, params = hf.load_pretrained(model_dir, dtype=args.dtype)
    out = {
        "impl": f"clarify_jax Sampler, jax {jax.__version__} ({jax.default_backend()})",
        "weight_bytes": sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(params)),
        "params": model.count_params(params),
    }
    for layout, unstack in (("layer_scan", False), ("per_layer", True)):
        sampler = Sampler(cfg, params, buckets=(len(prompt),), unstack_layers=unstack)
        run = {
            n: lambda n=n: sampler.sample([prompt], max_new_tokens=n).tokens[0][0]
            for n in (1, args.new_tokens)
        }
        start = time.perf_counter()
        tokens = run[args.new_tokens]()  # compiles
        first_s = time.perf_counter() - start
        run[1]()
        per_token = per_token_seconds(run, args)
        out[layout] = {"seconds_per_token": per_token, "tokens": tokens, "first_call_s": first_s}
    return out


def decode_reference(args: Bench, model_dir: str, prompt, device: str) -> dict:
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model = model.to(device).eval()
    model.generation_config.eos_token_id = model.config.eos_token_id = None
    ids = torch.as_tensor([prompt], device=device)

    def generate(n):
        with torch.inference_mode():
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n, min_new_tokens=n
            )
        return out[0, len(prompt) :].tolist()  # .tolist() waits for the device

    run = {n: (lambda n=n: generate(n)) for n in (1, args.new_tokens)}
    tokens = run[args.new_tokens]()
    run[1]()
    return {
        "impl": f"transformers {transformers.__version__} generate (sdpa)",
        "seconds_per_token": per_token_seconds(run, args),
        "tokens": tokens,
    }


def per_token_seconds(run: dict, args: Bench) -> float:
    """Median over rounds of (t(N) - t(1)) / (N - 1): the time a new token adds, prefill excluded."""
    rounds = []
    for _ in range(args.reps):
        short, full = timed(run[1], 1, 0)[0], timed(run[args.new_tokens], 1, 0)[0]
        rounds.append((full - short) / (args.new_tokens - 1))
    return statistics.median(rounds)


def main(args: Bench) -> dict:
    args = with_shape(args)
    import jax
    import numpy as np
    import torch

    from clarify_jax.train.flops import peak_flops, peak_memory_bandwidth, training_flops_per_token

    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference, weights = reference_model(args, max(args.seq, args.prompt + args.new_tokens))
    with tempfile.TemporaryDirectory() as model_dir:
        reference.save_pretrained(model_dir)
        del reference
        # Each side's model and optimizer state die with its function, before the next one starts.
        # The reference goes first: torch hands its cached memory back to the GPU (empty_cache),
        # where XLA's allocator keeps what it took for the rest of the process.
        theirs = train_reference(args, model_dir, device)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        ours = train_ours(args, model_dir)
        gc.collect()
        prompt = np.random.default_rng(1).integers(3, args.vocab, args.prompt).tolist()
        ours_decode, reference_decode = (
            decode_ours(args, model_dir, prompt),
            decode_reference(args, model_dir, prompt, device),
        )
    cfg = ours.pop("cfg")
    tokens, peak = args.batch * args.seq, peak_flops()
    flops_per_token = training_flops_per_token(cfg, args.seq)

    def training(side: dict) -> dict:
        median = statistics.median(side["times_s"])
        flops = flops_per_token * tokens / median
        return {
            **side,
            "median_s": median,
            "tokens_per_s": tokens / median,
            "flops_per_s": flops,
            "mfu": None if peak is None else flops / peak,
        }

    bandwidth = peak_memory_bandwidth()
    bound = None if bandwidth is None else ours_decode["weight_bytes"] / bandwidth

    def decoding(side: dict) -> dict:
        per_token = side["seconds_per_token"]
        return {
            **side,
            "tokens_per_s": 1 / per_token,
            "ratio_to_bound": None if bound is None else per_token / bound,
        }

    train = {"ours": training(ours), "reference": training(theirs)}
    train["ratio_ours_over_reference"] = train["reference"]["median_s"] / train["ours"]["median_s"]
    train["first_loss_difference"] = abs(ours["first_loss"] - theirs["first_loss"])
    train["mfu_goal_met"] = None if peak is None else train["ours"]["mfu"] >= 0.45
    layouts = ("layer_scan", "per_layer")
    decode = {"ours": {**ours_decode, **{k: decoding(ours_decode[k]) for k in layouts}}}
    decode["reference"] = decoding(reference_decode)
    best = min(layouts, key=lambda k: ours_decode[k]["seconds_per_token"])
    decode["bound_s_per_token"] = bound
    decode["ours_best_layout"] = best
    decode["ratio_ours_over_reference"] = (
        reference_decode["seconds_per_token"] / ours_decode[best]["seconds_per_token"]
    )
    decode["same_tokens"] = {k: ours_decode[k]["tokens"] == reference_decode["tokens"] for k in layouts}
    decode["bound_goal_met"] = None if bound is None else decode["ours"][best]["ratio_to_bound"] <= 1.5
    device_info = jax.devices()[0]
    result = {
        "benchmark": "accelerator_checks",
        "model": model_summary(args, weights, ours_decode["params"]),
        "dtype": args.dtype,
        "train": {
            "batch": args.batch,
            "seq": args.seq,
            "flops_per_token": flops_per_token,
            "peak_flops": peak,
            **train,
        },
        "decode": {
            "batch": 1,
            "prompt": args.prompt,
            "new_tokens": args.new_tokens,
            "peak_memory_bandwidth": bandwidth,
            **decode,
        },
        "machine": {
            "jax_device": getattr(device_info, "device_kind", str(device_info)),
            "torch_device": torch.cuda.get_device_name()
            if device == "cuda"
            else platform.processor() or "cpu",
            "jax": jax.__version__,
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main(parse())
