"""Training-step throughput of our jitted train step vs a transformers/PyTorch AdamW step, on the CPU.

Both train the same random llama (built with transformers, saved, loaded into ours) on the same
batch: random tokens, one sequence per row, targets the next tokens, the second half of each row
split between clarify and code targets. Both compute the same joint loss (sum over kinds of weight
x mean cross-entropy over that kind's targets), clip gradients to a global norm, and take an AdamW
step with the same betas, eps, weight decay (none on the norm scales, in both) and learning rate.
Ours computes the LM head only at the positions that carry a loss (half of each row here), as the
trainer does; the reference, like transformers' training, at every position.
The reference is `loss.backward()`, `clip_grad_norm_`, `torch.optim.AdamW.step()`, `zero_grad()`
on transformers' LlamaForCausalLM with sdpa attention, in float32, torch threads = CPU cores.

Prints one JSON object:
  ours / reference          median seconds per step, tokens/s and achieved FLOP/s (training FLOPs per
                            token from `training_flops_per_token`: 6 N plus attention, the same
                            count for both, so the FLOP/s ratio equals the tokens/s ratio)
  ratio_ours_over_reference reference median / ours median: above 1 means ours is faster; goal_met
                            says whether it is at least 1
  agreement                 after one step from identical weights: loss difference, max abs
                            difference of the gradients (before clipping) and of the updated weights
  phases                    forward alone (loss, no gradients), forward+backward alone, optimizer
                            alone (clip + AdamW), both implementations: where a gap comes from
  gemm_gflops               the step's largest matmuls alone (forward, input-gradient and weight-
                            gradient layouts) on XLA:CPU and on torch (oneDNN/MKL)

With --lora-rank R both train LoRA adapters (rank R on every projection, the base frozen): ours with
the project's adapters, the reference with PEFT on the same model, starting from the same adapter
values (ours, copied into PEFT's lora_A / lora_B), so the agreement compares the adapters'
gradients and updated values.

Timings are medians over --reps runs after --warmup runs (our first step compiles), ours and the
reference alternating so that both see the same machine load; `ratio_per_pair_median` is the median
of the per-round ratios and `ratio_best` compares the fastest runs. On a busy machine (see
machine.load_average) the numbers swing by 2x and torch suffers more than XLA (its OpenMP barriers
wait for descheduled threads), so a ratio near 1 under load is not a win: trust the phases and the
best times of a quiet run, and rerun with more --reps.

    python scripts/bench_train.py            # ~46M llama (hidden 512, 4 layers), batch 4 x 512: ~6 min
    python scripts/bench_train.py --small    # a tiny config, under a minute
    python scripts/bench_train.py --torch-compile --no-gemm   # also torch.compile (compiles ~2+ min)
    python scripts/bench_train.py --lora-rank 16              # LoRA: ours vs transformers + PEFT
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import re
import statistics
import tempfile
import time
from typing import Literal

import tyro
from bench_models import model_summary, reference_model, with_shape  # scripts/ is on sys.path

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# --small: sizes that run the whole benchmark (compiles included) in well under a minute.
SMALL = dict(
    hidden=128,
    layers=2,
    heads=4,
    kv_heads=4,
    intermediate=384,
    vocab=4096,
    batch=2,
    seq=128,
    reps=3,
    warmup=1,
)


@dataclasses.dataclass
class Bench:
    shape: str = "custom"
    """custom (the sizes below) or smollm2-135m: SmolLM2-135M-Instruct's shape, with its real
    weights once `make smollm2` has converted them (the sizes below are then ignored)."""
    hidden: int = 512
    layers: int = 4
    heads: int = 8
    kv_heads: int = 8
    intermediate: int = 1536
    vocab: int = 32000
    batch: int = 4
    seq: int = 512
    reps: int = 5
    """Timed steps per implementation; the median is reported."""
    warmup: int = 2
    """Untimed steps per implementation first (ours compiles in the first)."""
    small: bool = False
    """A tiny model and batch (sizes not set on the command line are taken from SMALL)."""
    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    clarify_weight: float = 1.0
    code_weight: float = 0.5
    threads: int | None = None
    """Torch intra-op threads (default: one per core, as XLA:CPU uses)."""
    torch_attention: str = "sdpa"
    torch_adamw: Literal["fused", "foreach", "for-loop"] = "fused"
    """torch.optim.AdamW implementation of the reference (fused is the fastest on CPU)."""
    torch_compile: bool = False
    """Also time a torch.compile'd reference (model and loss compiled; needs a C++ compiler)."""
    phases: bool = True
    """Time forward, forward+backward and the optimizer alone for both."""
    gemm: bool = True
    """Time the step's largest matmuls alone on both."""
    lora_rank: int = 0
    """> 0: train LoRA adapters of this rank on every projection (LORA_TARGETS), the base frozen;
    the reference is transformers + PEFT."""
    lora_alpha: float = 32.0
    remat: Literal["none", "full", "dots", "dots_no_batch"] = "none"
    """Our activation rematerialisation per layer (ModelConfig.remat; imported late, like jax)."""


def with_small(args: Bench) -> Bench:
    """`--small` replaces the sizes still at their full defaults."""
    if not args.small:
        return args
    full = Bench()
    unset = {k: v for k, v in SMALL.items() if getattr(args, k) == getattr(full, k)}
    return dataclasses.replace(args, **unset)


def interleaved_seconds(fns, reps: int, warmup: int) -> list[list[float]]:
    """Times `fns` in turn, `reps` rounds after `warmup` untimed ones, so all see the same load."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return times


def make_batch(args: Bench):
    """Random tokens, one sequence per row; targets are the next tokens, and the second half of
    each row is clarify targets then code targets (the last position has no target)."""
    import numpy as np

    b, t = args.batch, args.seq
    tokens = np.random.default_rng(0).integers(0, args.vocab, (b, t)).astype(np.int32)
    position = np.arange(t)
    has_next = position < t - 1
    clarify = (position >= t // 2) & (position < 3 * t // 4) & has_next
    code = (position >= 3 * t // 4) & has_next
    return {
        "tokens": tokens,
        "segment_ids": np.ones((b, t), np.int32),
        "positions": np.broadcast_to(position.astype(np.int32), (b, t)).copy(),
        "targets": np.where(has_next, np.roll(tokens, -1, axis=1), 0).astype(np.int32),
        "clarify_mask": np.broadcast_to(clarify.astype(np.float32), (b, t)).copy(),
        "code_mask": np.broadcast_to(code.astype(np.float32), (b, t)).copy(),
    }


def torch_joint_loss(logits, targets, masks, weights):
    """Our joint loss in torch: sum over kinds of weight x mean cross-entropy over the kind's mask."""
    import torch.nn.functional as F

    cross_entropy = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    cross_entropy = cross_entropy.view_as(targets)
    return sum(w * (cross_entropy * m).sum() / m.sum().clamp(min=1.0) for w, m in zip(weights, masks))


def to_our_layout(cfg, tensors: dict) -> dict[str, object]:
    """HF-named numpy tensors (weights or gradients) -> {"a/b/c": array in our stacked layout}."""
    import numpy as np

    from clarify_jax.hf.names import get_path, tensor_maps
    from clarify_jax.model.transformer import param_shapes

    shapes, out = param_shapes(cfg), {}
    for m in tensor_maps(cfg):
        leaf = get_path(shapes, m.path)
        slice_shape = leaf.shape[1:] if m.per_layer else leaf.shape
        arrays = [m.from_hf(tensors[name], slice_shape) for name in m.hf_names(cfg)]
        out["/".join(m.path)] = np.stack(arrays) if m.per_layer else arrays[0]
    return out


def flat(tree) -> dict[str, object]:
    import jax
    import numpy as np

    return {
        "/".join(k.key for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
    }


def max_difference(ours: dict, theirs: dict) -> dict:
    """The largest |ours - theirs| over all tensors, which tensor holds it, and the largest |theirs|."""
    import numpy as np

    per_tensor = {name: float(np.abs(ours[name] - theirs[name]).max()) for name in ours}
    worst = max(per_tensor, key=per_tensor.get)
    return {
        "max_abs": per_tensor[worst],
        "tensor": worst,
        "max_abs_value": max(float(np.abs(t).max()) for t in theirs.values()),
    }


def peft_reference(reference, args: Bench, adapters: dict):
    """`reference` wrapped by PEFT with LoRA on LORA_TARGETS, its adapters set to ours
    (`adapters`: flat {"layers/self_attn/q_proj/lora_a": [L, in..., r], ...})."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.lora_rank, lora_alpha=args.lora_alpha, target_modules=list(LORA_TARGETS), lora_dropout=0.0
    )
    wrapped = get_peft_model(reference, config)
    with torch.no_grad():
        for name, weight in peft_adapter_tensors(wrapped, lambda t: t).items():
            key, layer = name
            ours = adapters[key][layer]
            r = args.lora_rank
            # ours: a [in..., r], b [r, out...]; PEFT: lora_A.weight [r, in], lora_B.weight [out, r]
            value = ours.reshape(-1, r).T if key.endswith("lora_a") else ours.reshape(r, -1).T
            weight.copy_(torch.from_numpy(value.copy()))
    return wrapped


def peft_adapter_tensors(wrapped, pick) -> dict:
    """{(our flat adapter key, layer): pick(PEFT's lora_A / lora_B weight)} of a PEFT model."""
    out = {}
    for name, module in wrapped.named_modules():
        match = re.search(r"layers\.(\d+)\.(\w+)\.(\w+)$", name)
        if match and hasattr(module, "lora_A") and "default" in module.lora_A:
            layer, group, projection = int(match.group(1)), match.group(2), match.group(3)
            for leaf, part in (("lora_a", module.lora_A), ("lora_b", module.lora_B)):
                out[(f"layers/{group}/{projection}/{leaf}", layer)] = pick(part["default"].weight)
    return out


def peft_in_our_layout(wrapped, pick, shapes: dict) -> dict:
    """PEFT's adapters (values or gradients, by `pick`) as our flat stacked arrays of `shapes`."""
    import numpy as np

    per_layer = {}
    for (key, layer), tensor in peft_adapter_tensors(wrapped, pick).items():
        per_layer.setdefault(key, {})[layer] = tensor.T  # [in, r] / [r, out]
    return {
        key: np.stack([layers[i] for i in range(len(layers))]).reshape(shapes[key])
        for key, layers in per_layer.items()
    }


def gemm_gflops(m: int, k: int, n: int, layout: str, reps: int) -> dict:
    """[m, k] x [k, n] matmul GFLOP/s of XLA (jax.jit) and torch, interleaved; layout "tn" stores
    the first operand as [k, m] (a weight gradient x^T dy), "nt" the second as [n, k] (dy W^T)."""
    import jax
    import numpy as np
    import torch

    rng = np.random.default_rng(1)
    a = rng.standard_normal((k, m) if layout[0] == "t" else (m, k), np.float32)
    b = rng.standard_normal((n, k) if layout[1] == "t" else (k, n), np.float32)

    def product(x, y):
        return (x.T if layout[0] == "t" else x) @ (y.T if layout[1] == "t" else y)

    xla = jax.jit(product)
    ja, jb = jax.device_put(a), jax.device_put(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    xla_s, torch_s = interleaved_seconds(
        [lambda: xla(ja, jb).block_until_ready(), lambda: product(ta, tb)], reps, warmup=1
    )
    flops = 2 * m * k * n
    return {
        "shape": [m, k, n],
        "layout": layout,
        "xla": round(flops / statistics.median(xla_s) / 1e9, 1),
        "torch": round(flops / statistics.median(torch_s) / 1e9, 1),
    }


def main(args: Bench) -> dict:
    args = with_shape(args)
    args = with_small(args)
    import jax
    import numpy as np
    import optax
    import torch
    import transformers

    from clarify_jax import hf, model
    from clarify_jax.model.lora import init_lora_params
    from clarify_jax.parallel.mesh import make_mesh
    from clarify_jax.parallel.sharding import LogicalSharding
    from clarify_jax.train.config import OptimizerConfig, Stage
    from clarify_jax.train.flops import peak_flops, training_flops_per_token
    from clarify_jax.train.optimizer import make_optimizer
    from clarify_jax.train.step import Trainer, loss_weights

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    reference, weights_source = reference_model(args, args.seq)
    reference = reference.train()
    reference.config._attn_implementation = args.torch_attention
    with tempfile.TemporaryDirectory() as tmp:
        reference.save_pretrained(tmp)
        cfg, params = hf.load_pretrained(tmp, dtype="float32")
        compiled_model = None
        if args.torch_compile:  # a second copy of the same weights, trained on its own
            compiled_model = transformers.LlamaForCausalLM.from_pretrained(tmp).train()
    cfg = cfg.replace(remat=args.remat)
    lora = args.lora_rank > 0
    if lora:
        cfg = cfg.replace(lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_targets=LORA_TARGETS)
        trainable, frozen = init_lora_params(cfg, jax.random.key(0)), params
    else:
        trainable, frozen = params, {}
    initial = flat(trainable)

    # ---- ours: the project's Trainer on a one-device mesh ----
    opt_config = OptimizerConfig(
        weight_decay=args.weight_decay, clip_norm=args.clip_norm, schedule="constant"
    )
    stage = Stage(steps=1_000_000, learning_rate=args.learning_rate)
    optimizer, schedule = make_optimizer([stage], opt_config)
    sharding = LogicalSharding(make_mesh("1,1,1", jax.devices()[:1]))
    trainer = Trainer(cfg, sharding, optimizer, schedule, grad_accum=1, seed=0)
    weights = loss_weights(args.clarify_weight, args.code_weight)
    host_batch = make_batch(args)
    batch = {k: jax.device_put(v, trainer.batch_sharding()) for k, v in host_batch.items()}

    def loss_fn(p, base, b, w):
        """The train step's loss of trainable `p` (the adapters with LoRA, else all params) over `base`."""
        return trainer.loss(p, base, b, w)[0]

    def update(grads, opt_state, p):
        """(opt_state, params) out in the order they came in: JAX pairs donated inputs with outputs
        of the same shape in order, and a mismatch makes XLA copy every buffer."""
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return opt_state, optax.apply_updates(p, updates)

    ours_forward = jax.jit(loss_fn)
    ours_forward_backward = jax.jit(jax.value_and_grad(loss_fn))
    ours_update = jax.jit(update, donate_argnums=(1, 2))

    # ---- reference: transformers (+ PEFT with LoRA) + torch AdamW, same hyperparameters ----
    if lora:
        reference = peft_reference(reference, args, initial)
        if compiled_model is not None:
            compiled_model = peft_reference(compiled_model, args, initial)
    t_tokens = torch.as_tensor(host_batch["tokens"], dtype=torch.long)
    t_targets = torch.as_tensor(host_batch["targets"], dtype=torch.long)
    t_masks = [torch.as_tensor(host_batch[f"{kind}_mask"]) for kind in ("clarify", "code")]
    t_weights = [args.clarify_weight, args.code_weight]

    def torch_optimizer(module):
        trained = [p for p in module.parameters() if p.requires_grad]  # PEFT freezes the base
        decay = [p for p in trained if p.ndim >= 2]  # no decay on the norm scales, as ours
        no_decay = [p for p in trained if p.ndim < 2]
        impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.learning_rate,
            betas=(opt_config.b1, opt_config.b2),
            eps=opt_config.eps,
            **impl[args.torch_adamw],
        )

    def torch_loss(module):
        return torch_joint_loss(
            module(input_ids=t_tokens, use_cache=False).logits, t_targets, t_masks, t_weights
        )

    def torch_trainer(module, loss):
        """(forward+backward, clip+optimizer step, whole step) for `module` with loss `loss()`."""
        opt = torch_optimizer(module)

        def forward_backward():
            value = loss()
            value.backward()
            return value.detach()

        trained = [p for p in module.parameters() if p.requires_grad]

        def optimizer_step():
            torch.nn.utils.clip_grad_norm_(trained, args.clip_norm, foreach=True)
            opt.step()

        def step():
            value = forward_backward()
            optimizer_step()
            opt.zero_grad(set_to_none=True)
            return value

        return forward_backward, optimizer_step, step, opt

    torch_forward_backward, torch_optimizer_step, torch_step, torch_opt = torch_trainer(
        reference, lambda: torch_loss(reference)
    )

    # ---- agreement: gradients and one step from identical weights ----
    ours_loss0, ours_grads = ours_forward_backward(trainable, frozen, batch, weights)
    ours_grads = flat(ours_grads)
    state = trainer.init_state(trainable)
    start = time.perf_counter()
    state, metrics = trainer.train_step(state, frozen, batch, weights)  # compiles
    ours_loss = float(metrics["loss"])
    first_step_s = time.perf_counter() - start
    ours_after = flat(state["params"])

    reference_loss = float(torch_forward_backward())
    # Copies: clip_grad_norm_ scales the gradients in place, and .numpy() shares their memory.
    if lora:
        shapes = {k: v.shape for k, v in initial.items()}
        reference_grads = peft_in_our_layout(reference, lambda w: w.grad.numpy().copy(), shapes)
    else:
        reference_grads = to_our_layout(
            cfg, {n: p.grad.numpy().copy() for n, p in reference.named_parameters()}
        )
    torch_optimizer_step()
    torch_opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        if lora:
            reference_after = peft_in_our_layout(reference, lambda w: w.numpy().copy(), shapes)
        else:
            reference_after = to_our_layout(
                cfg, {n: p.numpy().copy() for n, p in reference.named_parameters()}
            )
    agreement = {
        "loss_ours": ours_loss,
        "loss_reference": reference_loss,
        "loss_difference": abs(ours_loss - reference_loss),
        "loss_ours_value_and_grad": float(ours_loss0),
        "gradient_difference": max_difference(ours_grads, reference_grads),
        "weight_difference": max_difference(ours_after, reference_after),
        "max_abs_update": max(float(np.abs(ours_after[k] - initial[k]).max()) for k in initial),
        "learning_rate": args.learning_rate,
        "note": "Adam's first step moves each weight by about lr x sign(gradient): weights whose "
        "gradient is ~0 can differ by up to ~2 lr",
    }

    # ---- the whole step, timed ----
    holder = {"state": state}

    def ours_step():
        new_state, step_metrics = trainer.train_step(holder["state"], frozen, batch, weights)
        holder["state"] = new_state
        jax.block_until_ready((new_state, step_metrics))

    steps = [ours_step, torch_step]
    compiled = None
    if compiled_model is not None:
        compiled_model.config._attn_implementation = args.torch_attention
        compiled_loss = torch.compile(lambda: torch_loss(compiled_model))
        start = time.perf_counter()
        compiled = torch_trainer(compiled_model, compiled_loss)
        compiled_loss0 = float(compiled[2]())  # compiles forward and backward
        compile_s = time.perf_counter() - start
        steps.append(compiled[2])
    step_times = interleaved_seconds(steps, args.reps, args.warmup)
    ours_times, reference_times = step_times[:2]

    n_tokens = args.batch * args.seq
    flops_per_token = training_flops_per_token(cfg, args.seq, frozen_base=lora)

    def throughput(times):
        median = statistics.median(times)
        return {
            "median_s": median,
            "tokens_per_s": n_tokens / median,
            "flops_per_s": flops_per_token * n_tokens / median,
            "best_s": min(times),
            "times_s": [round(t, 3) for t in times],
        }

    ours_s, reference_s = statistics.median(ours_times), statistics.median(reference_times)
    peak = peak_flops()
    result = {
        "benchmark": "train_step",
        "model": model_summary(args, weights_source, model.count_params(params)),
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_step": n_tokens,
        "dtype": "float32",
        "remat": cfg.remat,
        "reps": args.reps,
        "warmup": args.warmup,
        "flops_per_token": flops_per_token,
        "lora": {"rank": args.lora_rank, "alpha": args.lora_alpha, "targets": list(LORA_TARGETS)}
        if lora
        else None,
        "optimizer": {
            "learning_rate": args.learning_rate,
            "b1": opt_config.b1,
            "b2": opt_config.b2,
            "eps": opt_config.eps,
            "weight_decay": args.weight_decay,
            "clip_norm": args.clip_norm,
            "no_decay_on": "norm scales (both)",
        },
        "ours": dict(
            throughput(ours_times),
            impl="Trainer.train_step (jit, donated state, optax adamw)",
            # The first step less a timed one: tracing and XLA compilation, not in median_s.
            compile_s=first_step_s - ours_s,
            backend=jax.default_backend(),
            mfu=None if peak is None else flops_per_token * n_tokens / ours_s / peak,
        ),
        "reference": dict(
            throughput(reference_times),
            impl=f"transformers {transformers.__version__} ({args.torch_attention}), "
            + (f"peft {importlib.metadata.version('peft')}, " if lora else "")
            + f"torch {torch.__version__}, AdamW {args.torch_adamw}, eager",
            threads=torch.get_num_threads(),
        ),
        "ratio_ours_over_reference": reference_s / ours_s,
        "ratio_per_pair_median": statistics.median(r / o for o, r in zip(ours_times, reference_times)),
        # Best over best: the least disturbed runs, a check on the medians when the machine is busy.
        "ratio_best": min(reference_times) / min(ours_times),
        "goal_met": reference_s / ours_s >= 1.0,
        "agreement": agreement,
    }
    if compiled is not None:
        compiled_s = statistics.median(step_times[2])
        result["reference_compiled"] = dict(
            throughput(step_times[2]),
            impl="torch.compile(model + loss)",
            compile_s=compile_s,
            first_loss=compiled_loss0,
            loss_difference=abs(compiled_loss0 - reference_loss),
        )
        result["ratio_ours_over_reference_compiled"] = compiled_s / ours_s

    # ---- where the time goes: each part alone ----
    if args.phases:
        state = holder.pop("state")
        p, opt_state = state["params"], state["opt_state"]
        grads = ours_forward_backward(p, frozen, batch, weights)[1]
        holder.update(params=p, opt_state=opt_state)

        def ours_optimizer():
            holder["opt_state"], holder["params"] = ours_update(grads, holder["opt_state"], holder["params"])
            jax.block_until_ready(holder["params"])

        def torch_forward():
            with torch.no_grad():
                return torch_loss(reference)

        def torch_forward_backward_fresh():
            torch_opt.zero_grad(set_to_none=True)
            return torch_forward_backward()

        pairs = {
            "forward": (lambda: ours_forward(p, frozen, batch, weights).block_until_ready(), torch_forward),
            "forward_backward": (
                lambda: jax.block_until_ready(ours_forward_backward(p, frozen, batch, weights)),
                torch_forward_backward_fresh,
            ),
            "optimizer": (ours_optimizer, torch_optimizer_step),  # grads kept from the last backward
        }
        phases = {}
        for name, fns in pairs.items():
            ours_phase, reference_phase = map(statistics.median, interleaved_seconds(fns, args.reps, 1))
            phases[name] = {
                "ours_s": ours_phase,
                "reference_s": reference_phase,
                "ratio_ours_over_reference": reference_phase / ours_phase,
            }
        ours_backward = phases["forward_backward"]["ours_s"] - phases["forward"]["ours_s"]
        reference_backward = phases["forward_backward"]["reference_s"] - phases["forward"]["reference_s"]
        phases["backward_by_difference"] = {
            "ours_s": ours_backward,
            "reference_s": reference_backward,
            "ratio_ours_over_reference": reference_backward / ours_backward,
        }
        result["phases"] = phases

    if args.gemm:
        bt, d, f, v = n_tokens, args.hidden, args.intermediate, args.vocab
        result["gemm_gflops"] = [
            gemm_gflops(bt, d, f, "nn", args.reps),  # gate/up projection forward
            gemm_gflops(bt, f, d, "nt", args.reps),  # their input gradient: dy @ W^T
            gemm_gflops(d, bt, f, "tn", args.reps),  # their weight gradient: x^T @ dy
            gemm_gflops(bt, d, v, "nn", args.reps),  # lm_head forward
            gemm_gflops(bt, v, d, "nt", args.reps),  # lm_head input gradient
            gemm_gflops(d, bt, v, "tn", args.reps),  # lm_head weight gradient
        ]

    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(tyro.cli(Bench))
