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

Each side is built and run in a process of its own (`--no-isolate`: both in this one), the way a
user runs either. Alternating still costs the side that takes more fresh memory per call on a VM
that hands freed pages back to its host (see bench_process.py); `--settle 1` times each call right
after an untimed one of the same side, the steady state of a training loop. Timings are medians
over --reps runs after --warmup runs (our first step compiles), the two processes taking turns so
that both see the same machine load; `ratio_per_pair_median` is the median of the per-round ratios
and `ratio_best` compares the fastest runs. On a busy machine (see machine.load_average) the
numbers swing by 2x and torch suffers more than XLA (its OpenMP barriers wait for descheduled
threads), so a ratio near 1 under load is not a win: trust the phases and the best times of a
quiet run, and rerun with more --reps.

    python scripts/bench_train.py            # ~46M llama (hidden 512, 4 layers), batch 4 x 512: ~6 min
    python scripts/bench_train.py --small    # a tiny config, under a minute
    python scripts/bench_train.py --torch-compile --no-gemm   # also torch.compile (compiles ~2+ min)
    python scripts/bench_train.py --lora-rank 16              # LoRA: ours vs transformers + PEFT
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import re
import statistics
import tempfile
import time
from typing import Literal

import tyro

# scripts/ is on sys.path
from bench_models import model_summary, reference_model, torch_joint_loss, training_batch, with_shape
from bench_process import interleaved_seconds, open_side

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
    settle: int = 0
    """Untimed calls of a side just before each of its timed ones (steps and phases): the steady
    state of a training loop, where a step's freed memory is reused at once (see bench_process.py
    for what alternating costs on a VM that hands freed pages back to its host)."""
    isolate: bool = True
    """Build ours and the reference each in a process of its own (scripts/bench_process.py), as a
    user runs either; --no-isolate builds both in this process (they then share its allocator,
    caches and thread pools; see bench_process.py)."""


def with_small(args: Bench) -> Bench:
    """`--small` replaces the sizes still at their full defaults."""
    if not args.small:
        return args
    full = Bench()
    unset = {k: v for k, v in SMALL.items() if getattr(args, k) == getattr(full, k)}
    return dataclasses.replace(args, **unset)


def make_batch(args: Bench):
    """Targets on the second half of each row, as a dialogue's answer follows its prompt: clarify
    targets then code targets (the last position has none)."""
    return training_batch(args.batch, args.seq, args.vocab, first_target=args.seq // 2)


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


class OursSide:
    """Our side, built from the weights in `model_dir`: the project's Trainer on a one-device mesh
    (with LoRA, fresh adapters over the frozen base), the benchmark batch, and the pieces of a step
    alone for the phases. Built in a process of its own unless --no-isolate."""

    def __init__(self, args: Bench, model_dir: str):
        import jax
        import optax

        from clarify_jax import hf, model
        from clarify_jax.model.lora import init_lora_params
        from clarify_jax.parallel.mesh import make_mesh
        from clarify_jax.parallel.sharding import LogicalSharding
        from clarify_jax.train.config import OptimizerConfig, Stage
        from clarify_jax.train.flops import training_flops_per_token
        from clarify_jax.train.optimizer import make_optimizer
        from clarify_jax.train.step import Trainer, loss_weights

        cfg, params = hf.load_pretrained(model_dir, dtype="float32")
        cfg = cfg.replace(remat=args.remat)
        self.lora = args.lora_rank > 0
        if self.lora:
            cfg = cfg.replace(lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, lora_targets=LORA_TARGETS)
            self.trainable, self.frozen = init_lora_params(cfg, jax.random.key(0)), params
        else:
            self.trainable, self.frozen = params, {}
        self.cfg = cfg
        self.params_count = model.count_params(params)
        self.flops_per_token = training_flops_per_token(cfg, args.seq, frozen_base=self.lora)
        self.opt_config = OptimizerConfig(
            weight_decay=args.weight_decay, clip_norm=args.clip_norm, schedule="constant"
        )
        stage = Stage(steps=1_000_000, learning_rate=args.learning_rate)
        self.optimizer, schedule = make_optimizer([stage], self.opt_config)
        sharding = LogicalSharding(make_mesh("1,1,1", jax.devices()[:1]))
        self.trainer = Trainer(cfg, sharding, self.optimizer, schedule, grad_accum=1, seed=0)
        self.weights = loss_weights(args.clarify_weight, args.code_weight)
        self.batch = {
            k: jax.device_put(v, self.trainer.batch_sharding()) for k, v in make_batch(args).items()
        }

        def loss_fn(p, base, b, w):
            """The train step's loss of trainable `p` (the adapters with LoRA, else all params)."""
            return self.trainer.loss(p, base, b, w)[0]

        def update(grads, opt_state, p):
            """(opt_state, params) out in the order they came in: JAX pairs donated inputs with
            outputs of the same shape in order, and a mismatch makes XLA copy every buffer."""
            updates, opt_state = self.optimizer.update(grads, opt_state, p)
            return opt_state, optax.apply_updates(p, updates)

        self._forward = jax.jit(loss_fn)
        self._forward_backward = jax.jit(jax.value_and_grad(loss_fn))
        self._update = jax.jit(update, donate_argnums=(1, 2))
        self.state = None

    def describe(self) -> dict:
        """What the parent needs to know: config, sizes, the initial trainable values (flat)."""
        import jax

        return {
            "cfg": self.cfg,
            "params": self.params_count,
            "flops_per_token": self.flops_per_token,
            "opt_config": self.opt_config,
            "initial": flat(self.trainable),
            "backend": jax.default_backend(),
        }

    def first_step(self) -> dict:
        """Gradients and one step from the initial weights (the step compiles): the agreement data."""
        loss0, grads = self._forward_backward(self.trainable, self.frozen, self.batch, self.weights)
        state = self.trainer.init_state(self.trainable)
        start = time.perf_counter()
        self.state, metrics = self.trainer.train_step(state, self.frozen, self.batch, self.weights)
        loss = float(metrics["loss"])
        return {
            "loss": loss,
            "loss_value_and_grad": float(loss0),
            "first_step_s": time.perf_counter() - start,
            "grads": flat(grads),
            "after": flat(self.state["params"]),
        }

    def step(self) -> None:
        import jax

        self.state, metrics = self.trainer.train_step(self.state, self.frozen, self.batch, self.weights)
        jax.block_until_ready((self.state, metrics))

    def start_phases(self) -> None:
        """Gradients at the current weights, which `optimizer_step` then applies over and over."""
        self.phase_params, self.phase_opt_state = self.state["params"], self.state["opt_state"]
        self.state = None  # the optimizer phase donates these buffers
        self.grads = self._forward_backward(self.phase_params, self.frozen, self.batch, self.weights)[1]

    def forward(self) -> None:
        self._forward(self.phase_params, self.frozen, self.batch, self.weights).block_until_ready()

    def forward_backward(self) -> None:
        import jax

        jax.block_until_ready(
            self._forward_backward(self.phase_params, self.frozen, self.batch, self.weights)
        )

    def optimizer_step(self) -> None:
        import jax

        self.phase_opt_state, self.phase_params = self._update(
            self.grads, self.phase_opt_state, self.phase_params
        )
        jax.block_until_ready(self.phase_params)


class ReferenceSide:
    """The reference, built from the weights in `model_dir`: transformers' LlamaForCausalLM (with
    LoRA wrapped by PEFT, its adapters set to `initial`, ours) and torch AdamW with our
    hyperparameters (`opt_config`); with `compiled`, torch.compile'd model and loss instead.
    Built in a process of its own unless --no-isolate."""

    def __init__(self, args: Bench, model_dir: str, initial: dict, opt_config, compiled: bool = False):

        import torch
        import transformers

        torch.set_num_threads(args.threads or os.cpu_count())
        self.args, self.lora = args, args.lora_rank > 0
        module = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
        module.config._attn_implementation = args.torch_attention
        if self.lora:
            module = peft_reference(module, args, initial)
        self.module = module
        self.shapes = {k: v.shape for k, v in initial.items()}
        host_batch = make_batch(args)
        tokens = torch.as_tensor(host_batch["tokens"], dtype=torch.long)
        targets = torch.as_tensor(host_batch["targets"], dtype=torch.long)
        masks = [torch.as_tensor(host_batch[f"{kind}_mask"]) for kind in ("clarify", "code")]
        weights = [args.clarify_weight, args.code_weight]

        def loss():
            return torch_joint_loss(module(input_ids=tokens, use_cache=False).logits, targets, masks, weights)

        self.loss = torch.compile(loss) if compiled else loss
        self.trained = [p for p in module.parameters() if p.requires_grad]  # PEFT freezes the base
        decay = [p for p in self.trained if p.ndim >= 2]  # no decay on the norm scales, as ours
        no_decay = [p for p in self.trained if p.ndim < 2]
        impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=args.learning_rate,
            betas=(opt_config.b1, opt_config.b2),
            eps=opt_config.eps,
            **impl[args.torch_adamw],
        )
        self.compile_s = self.first_loss = None
        if compiled:  # compile forward and backward now, outside the timed steps
            start = time.perf_counter()
            self.first_loss = float(self._forward_backward())
            self.opt.zero_grad(set_to_none=True)
            self.compile_s = time.perf_counter() - start

    def describe(self) -> dict:
        import importlib.metadata

        import torch
        import transformers

        return {
            "impl": f"transformers {transformers.__version__} ({self.args.torch_attention}), "
            + (f"peft {importlib.metadata.version('peft')}, " if self.lora else "")
            + f"torch {torch.__version__}, AdamW {self.args.torch_adamw}, eager",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "compile_s": self.compile_s,
            "first_loss": self.first_loss,
        }

    def _forward_backward(self):
        value = self.loss()
        value.backward()
        return value.detach()

    def first_step(self) -> dict:
        """Gradients and one step from the initial weights: with LoRA the adapters in our layout,
        else every tensor by its HF name (the parent maps them; it knows our config)."""
        import torch

        loss = float(self._forward_backward())
        # Copies: clip_grad_norm_ scales the gradients in place, and .numpy() shares their memory.
        grads = self._tensors(lambda w: w.grad.numpy().copy())
        self.optimizer_step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            after = self._tensors(lambda w: w.numpy().copy())
        return {"loss": loss, "grads": grads, "after": after}

    def _tensors(self, pick) -> dict:
        if self.lora:
            return peft_in_our_layout(self.module, pick, self.shapes)
        return {name: pick(p) for name, p in self.module.named_parameters()}

    def step(self) -> None:
        self._forward_backward()
        self.optimizer_step()
        self.opt.zero_grad(set_to_none=True)

    def forward(self) -> None:
        import torch

        with torch.no_grad():
            self.loss()

    def forward_backward(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self._forward_backward()

    def optimizer_step(self) -> None:  # the gradients kept from the last backward
        import torch

        torch.nn.utils.clip_grad_norm_(self.trained, self.args.clip_norm, foreach=True)
        self.opt.step()


def compiled_reference_side(args: Bench, model_dir: str, initial: dict, opt_config) -> ReferenceSide:
    return ReferenceSide(args, model_dir, initial, opt_config, compiled=True)


def main(args: Bench) -> dict:
    args = with_shape(args)
    args = with_small(args)
    import jax
    import torch
    import transformers

    reference, weights_source = reference_model(args, args.seq)
    with tempfile.TemporaryDirectory() as model_dir:
        reference.save_pretrained(model_dir)
        del reference
        with contextlib.ExitStack() as sides:
            ours = sides.enter_context(open_side(args.isolate, "ours", OursSide, args, model_dir))
            info = ours.call("describe")
            initial, opt_config = info["initial"], info["opt_config"]
            theirs = sides.enter_context(
                open_side(args.isolate, "reference", ReferenceSide, args, model_dir, initial, opt_config)
            )
            compiled = None
            if args.torch_compile:  # a second copy of the same weights, trained on its own
                side_args = (args, model_dir, initial, opt_config)
                compiled = sides.enter_context(
                    open_side(args.isolate, "compiled reference", compiled_reference_side, *side_args)
                )
            result = measure(args, ours, theirs, compiled, info, weights_source)

    if args.gemm:
        bt, d, f, v = args.batch * args.seq, args.hidden, args.intermediate, args.vocab
        torch.set_num_threads(args.threads or os.cpu_count())
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
        "torch_threads": args.threads or os.cpu_count(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": list(os.getloadavg()),
    }
    print(json.dumps(result, indent=2))
    return result


def measure(args: Bench, ours, theirs, compiled, info: dict, weights_source: str) -> dict:
    """Agreement after one step, the whole step timed (the sides alternating), and the phases."""
    import numpy as np

    from clarify_jax.train.flops import peak_flops

    lora, cfg, initial = args.lora_rank > 0, info["cfg"], info["initial"]
    mine, reference = ours.call("first_step"), theirs.call("first_step")  # ours compiles here
    if not lora:  # the reference's tensors by HF name, mapped to ours
        reference["grads"] = to_our_layout(cfg, reference["grads"])
        reference["after"] = to_our_layout(cfg, reference["after"])
    agreement = {
        "loss_ours": mine["loss"],
        "loss_reference": reference["loss"],
        "loss_difference": abs(mine["loss"] - reference["loss"]),
        "loss_ours_value_and_grad": mine["loss_value_and_grad"],
        "gradient_difference": max_difference(mine["grads"], reference["grads"]),
        "weight_difference": max_difference(mine["after"], reference["after"]),
        "max_abs_update": max(float(np.abs(mine["after"][k] - initial[k]).max()) for k in initial),
        "learning_rate": args.learning_rate,
        "note": "Adam's first step moves each weight by about lr x sign(gradient): weights whose "
        "gradient is ~0 can differ by up to ~2 lr",
    }
    del mine["grads"], mine["after"], reference

    sides = [ours, theirs] + ([compiled] if compiled is not None else [])
    steps = [lambda side=side: side.call_timed("step")[1] for side in sides]
    step_times = interleaved_seconds(steps, args.reps, args.warmup, args.settle)
    ours_times, reference_times = step_times[:2]
    n_tokens = args.batch * args.seq
    flops_per_token = info["flops_per_token"]

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
    reference_info = theirs.call("describe")
    opt_config, peak = info["opt_config"], peak_flops()
    result = {
        "benchmark": "train_step",
        "model": model_summary(args, weights_source, info["params"]),
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_step": n_tokens,
        "dtype": "float32",
        "remat": cfg.remat,
        "reps": args.reps,
        "settle": args.settle,
        "warmup": args.warmup,
        "isolated": args.isolate,
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
            compile_s=mine["first_step_s"] - ours_s,
            backend=info["backend"],
            mfu=None if peak is None else flops_per_token * n_tokens / ours_s / peak,
        ),
        "reference": dict(
            throughput(reference_times), impl=reference_info["impl"], threads=reference_info["threads"]
        ),
        "ratio_ours_over_reference": reference_s / ours_s,
        "ratio_per_pair_median": statistics.median(r / o for o, r in zip(ours_times, reference_times)),
        # Best over best: the least disturbed runs, a check on the medians when the machine is busy.
        "ratio_best": min(reference_times) / min(ours_times),
        "goal_met": reference_s / ours_s >= 1.0,
        "agreement": agreement,
    }
    if compiled is not None:
        compiled_s, compiled_info = statistics.median(step_times[2]), compiled.call("describe")
        result["reference_compiled"] = dict(
            throughput(step_times[2]),
            impl="torch.compile(model + loss)",
            compile_s=compiled_info["compile_s"],
            first_loss=compiled_info["first_loss"],
            loss_difference=abs(compiled_info["first_loss"] - agreement["loss_reference"]),
        )
        result["ratio_ours_over_reference_compiled"] = compiled_s / ours_s

    # ---- where the time goes: each part alone ----
    if args.phases:
        ours.call("start_phases")
        phases = {}
        for name in ("forward", "forward_backward", "optimizer_step"):
            fns = [lambda side=side: side.call_timed(name)[1] for side in (ours, theirs)]
            ours_phase, reference_phase = map(
                statistics.median, interleaved_seconds(fns, args.reps, 1, args.settle)
            )
            phases[name.removesuffix("_step")] = {
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
    return result


if __name__ == "__main__":
    main(tyro.cli(Bench))
