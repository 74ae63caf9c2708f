"""ModelConfig: the shape and numerics of a decoder, read from and written to HF `config.json`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")
Dtype = Literal["float32", "bfloat16"]  # of params and compute, as options take them
RopeType = Literal["default", "linear", "llama3"]
RematPolicy = Literal["none", "full", "dots", "dots_no_batch"]
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_LORA_TARGETS = LORA_TARGETS[:4]  # the attention projections, as configs/paper.py adapts


class ConfigError(ValueError):
    """A config.json that this project cannot turn into a model."""


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    type: RopeType = "default"
    factor: float = 1.0
    # llama3 only: frequencies between these wavelengths are smoothly interpolated.
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Dimensions use the scaling book's letters: D embed, F mlp, N query heads, K kv heads, H head."""

    model_type: str
    vocab_size: int  # V
    hidden_size: int  # D
    intermediate_size: int  # F
    num_layers: int  # L
    num_heads: int  # N
    num_kv_heads: int  # K
    head_dim: int  # H
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling = RopeScaling()
    max_position_embeddings: int = 4096
    attention_bias: bool = False  # qwen2: bias on q, k, v (not o)
    tie_word_embeddings: bool = False
    sliding_window: int | None = None  # mistral: a key is visible when q_pos - k_pos < window
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None  # a tuple keeps the config hashable
    pad_token_id: int | None = None
    # Numerics, not part of the checkpoint.
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype
    remat: RematPolicy = "none"
    # Training only: the first `frozen_layers` layers run as a scan of their own whose output takes
    # no gradient, so the backward pass stops above them (their weights and adapters get none).
    frozen_layers: int = 0
    # LoRA adapters (training only; `lora_rank` 0 means none). Each targeted projection gets
    # float32 `lora_a` [in, r] and `lora_b` [r, out] beside its kernel, adding
    # (lora_alpha / lora_rank) * x @ a @ b to its output; export merges them into the kernel.
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"unsupported model_type {self.model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}"
            )
        unknown = set(self.lora_targets) - set(LORA_TARGETS)
        if unknown:
            raise ConfigError(
                f"unknown LoRA target modules {sorted(unknown)}; choose from {', '.join(LORA_TARGETS)}"
            )
        if self.lora_rank < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError("lora_rank must be >= 0 and lora_dropout in [0, 1)")
        if not 0 <= self.frozen_layers < self.num_layers:
            raise ConfigError(
                f"frozen_layers must be between 0 and num_layers - 1 = {self.num_layers - 1}, "
                f"got {self.frozen_layers}"
            )

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    @property
    def num_params(self) -> int:
        """Parameter count from the shapes alone (equals the size of the params pytree)."""
        d, f, n, k, h, v = (
            self.hidden_size,
            self.intermediate_size,
            self.num_heads,
            self.num_kv_heads,
            self.head_dim,
            self.vocab_size,
        )
        attn = d * n * h * 2 + d * k * h * 2 + (n * h + 2 * k * h if self.attention_bias else 0)
        per_layer = attn + 3 * d * f + 2 * d
        return self.num_layers * per_layer + d + v * d * (1 if self.tie_word_embeddings else 2)

    # ---- Hugging Face config.json ----

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json", **overrides) -> ModelConfig:
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"{source}: unsupported model_type {model_type!r}; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}"
            )
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        ):
            if not isinstance(hf.get(key), int):
                raise ConfigError(f"{source}: field {key!r} must be an integer, got {hf.get(key)!r}")
        hidden_act = hf.get("hidden_act", "silu")
        if hidden_act != "silu":
            raise ConfigError(f"{source}: hidden_act {hidden_act!r} is not supported (only 'silu')")
        if hf.get("mlp_bias"):
            raise ConfigError(f"{source}: mlp_bias=true is not supported")
        n = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hf["hidden_size"] // n
        rope_theta, scaling = _read_rope(hf, source)
        window = None
        if model_type == "mistral":
            window = hf.get("sliding_window")
        elif model_type == "qwen2" and hf.get("use_sliding_window"):
            raise ConfigError(f"{source}: qwen2 with use_sliding_window=true is not supported")
        fields = dict(
            model_type=model_type,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=n,
            num_kv_heads=hf.get("num_key_value_heads") or n,
            head_dim=head_dim,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=scaling,
            max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
            attention_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            sliding_window=window,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=_hashable(hf.get("eos_token_id")),
            pad_token_id=hf.get("pad_token_id"),
        )
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_hf_file(cls, path: str | Path, **overrides) -> ModelConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.exists():
            raise ConfigError(f"{path}: no config.json (is this a Hugging Face model directory?)")
        try:
            hf = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None
        return cls.from_hf_dict(hf, source=str(path), **overrides)

    def to_hf_dict(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """The config.json that transformers reads back to this model; `base` keeps unknown keys."""
        hf = dict(base or {})
        hf.pop("rope_parameters", None)  # rewritten below in the v4 form both v4 and v5 read
        architecture = {
            "llama": "LlamaForCausalLM",
            "qwen2": "Qwen2ForCausalLM",
            "mistral": "MistralForCausalLM",
        }[self.model_type]
        hf.update(
            architectures=[architecture],
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            hidden_act="silu",
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            rope_scaling=_rope_to_hf(self.rope_scaling),
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=self.bos_token_id,
            eos_token_id=list(self.eos_token_id)
            if isinstance(self.eos_token_id, tuple)
            else self.eos_token_id,
            pad_token_id=self.pad_token_id,
            torch_dtype=self.param_dtype,
        )
        if self.model_type != "qwen2":
            hf["attention_bias"] = self.attention_bias
        if self.model_type == "mistral":
            hf["sliding_window"] = self.sliding_window
        return hf


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _read_rope(hf: dict[str, Any], source: str) -> tuple[float, RopeScaling]:
    # transformers >= 5 writes `rope_parameters` (theta inside); released checkpoints use
    # `rope_theta` + `rope_scaling` with the type under "type" or "rope_type".
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "linear", "llama3"):
        raise ConfigError(
            f"{source}: rope scaling type {kind!r} is not supported (supported: default, linear, llama3)"
        )
    if kind == "default":
        return theta, RopeScaling()
    if "factor" not in params:
        raise ConfigError(f"{source}: rope scaling {kind!r} needs a 'factor'")
    scaling = RopeScaling(type=kind, factor=float(params["factor"]))
    if kind == "llama3":
        scaling = dataclasses.replace(
            scaling,
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=int(params.get("original_max_position_embeddings", 8192)),
        )
    return theta, scaling


def _rope_to_hf(s: RopeScaling) -> dict[str, Any] | None:
    if s.type == "default":
        return None
    out: dict[str, Any] = {"type": s.type, "rope_type": s.type, "factor": s.factor}
    if s.type == "llama3":
        out.update(
            low_freq_factor=s.low_freq_factor,
            high_freq_factor=s.high_freq_factor,
            original_max_position_embeddings=s.original_max_position_embeddings,
        )
    return out
