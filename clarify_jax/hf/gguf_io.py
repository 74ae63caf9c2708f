"""GGUF files (llama.cpp's format) read as a Hugging Face model: config, tensors, tokenizer.

The `gguf` package parses the file and dequantizes its blocks. This module turns llama.cpp's
metadata keys into an HF config dict and its tensor names into HF names, so that the loader of
HF directories (`pretrained.load_params`) takes a GGUF file as one more tensor source. Two
llama.cpp conventions are undone here: shapes are stored innermost-first (`ne` order; the reader
already gives numpy's [out, in]), and for the llama architecture the rows of q and k are permuted
per head from HF's rotate-half RoPE into interleaved pairs.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QType

from clarify_jax.hf.safetensors_io import CheckpointError
from clarify_jax.model.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)

MAGIC = b"GGUF"
ARCHITECTURES = ("llama", "qwen2")  # llama.cpp names; mistral-style files say "llama"
# Block formats `gguf.quants.dequantize` reads (the K-quants have no quantizer in gguf-py, only
# this dequantizer).
SUPPORTED_TYPES = (
    QType.F32,
    QType.F16,
    QType.BF16,
    QType.Q8_0,
    QType.Q4_0,
    QType.Q4_1,
    QType.Q5_0,
    QType.Q5_1,
    QType.Q2_K,
    QType.Q3_K,
    QType.Q4_K,
    QType.Q5_K,
    QType.Q6_K,
)

GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")

# tokenizer.ggml.* keys handed to the tokenizer builder, under the names it uses.
TOKENIZER_KEYS = {
    "model": "tokenizer.ggml.model",
    "pre": "tokenizer.ggml.pre",
    "tokens": "tokenizer.ggml.tokens",
    "token_type": "tokenizer.ggml.token_type",
    "scores": "tokenizer.ggml.scores",
    "merges": "tokenizer.ggml.merges",
    "bos_token_id": "tokenizer.ggml.bos_token_id",
    "eos_token_id": "tokenizer.ggml.eos_token_id",
    "unk_token_id": "tokenizer.ggml.unknown_token_id",
    "pad_token_id": "tokenizer.ggml.padding_token_id",
    "eot_token_id": "tokenizer.ggml.eot_token_id",
    "eom_token_id": "tokenizer.ggml.eom_token_id",
    "add_bos_token": "tokenizer.ggml.add_bos_token",
    "add_eos_token": "tokenizer.ggml.add_eos_token",
    "add_space_prefix": "tokenizer.ggml.add_space_prefix",
    "chat_template": "tokenizer.chat_template",
}
_MISSING = object()


def is_gguf(path: str | Path) -> bool:
    """A file that starts with the GGUF magic (whatever its name)."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == MAGIC


class _Reader(gguf.GGUFReader):
    """GGUFReader that checks every tensor's bytes lie inside the file before mapping them, so a
    truncated download is reported with the tensor it cuts instead of a reshape error."""

    def _build_tensors(self, start_offs: int, fields) -> None:
        size = len(self.data)
        for field in fields:
            _, name_data, _, dims, raw_type, offset = field.parts
            name = bytes(name_data).decode("utf-8", "replace")
            try:
                qtype = QType(int(raw_type[0]))
            except ValueError:
                raise CheckpointError(
                    f"{self.path}: tensor {name!r} has unknown ggml type {int(raw_type[0])}"
                ) from None
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
            end = start_offs + int(offset[0]) + int(np.prod(dims, dtype=np.int64)) * type_size // block
            if end > size:
                raise CheckpointError(
                    f"{self.path}: truncated: tensor {name!r} needs bytes up to {end}, the file has {size}"
                )
        super()._build_tensors(start_offs, fields)

    def __init__(self, path: Path):
        self.path = path
        super().__init__(path)


class GGUFModel:
    """One GGUF file: its metadata as an HF config dict, and its tensors under HF names.

    Tensors are dequantized to float32 one at a time by `get`, the interface the HF loader reads
    (`shape(name)`, `get(name)`, `path`).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such file")
        try:
            self._reader = _Reader(self.path)
        except CheckpointError:
            raise
        except (ValueError, IndexError, KeyError, OverflowError, OSError) as e:
            # The header (metadata and tensor list) itself is cut or not GGUF at all.
            raise CheckpointError(
                f"{self.path}: not a readable GGUF file, or truncated in its header ({type(e).__name__}: {e})"
            ) from None
        self.architecture = self.value("general.architecture")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"{self.path}: general.architecture is {self.architecture!r}; "
                f"supported: {', '.join(ARCHITECTURES)}"
            )
        if self.value("split.count", 1) > 1:
            raise CheckpointError(
                f"{self.path}: one part of a split GGUF model; merge the parts "
                "first (llama-gguf-split --merge)"
            )
        self._tensors: dict[str, Any] = {}
        for tensor in self._reader.tensors:
            self._tensors[hf_name(tensor.name)] = tensor
        for name, tensor in self._tensors.items():
            if name.startswith(("model.", "lm_head")) and tensor.tensor_type not in SUPPORTED_TYPES:
                raise CheckpointError(
                    f"{self.path}: tensor {tensor.name!r} is stored as {tensor.tensor_type.name}, "
                    f"which is not supported (supported: {', '.join(t.name for t in SUPPORTED_TYPES)})"
                )

    # ---- metadata ----
    def value(self, key: str, default: Any = _MISSING) -> Any:
        """A metadata value as Python (str, int, float, bool or a list of them)."""
        field = self._reader.fields.get(key)
        if field is None:
            if default is _MISSING:
                raise ConfigError(f"{self.path}: metadata key {key!r} is missing")
            return default
        return field.contents()

    def _arch(self, key: str, default: Any = _MISSING) -> Any:
        return self.value(f"{self.architecture}.{key}", default)

    def hf_config(self) -> dict[str, Any]:
        """The metadata as the config.json of the same model in transformers."""
        embed = self._tensors.get("model.embed_tokens.weight")
        if embed is None:
            raise CheckpointError(f"{self.path}: tensor 'token_embd.weight' is missing")
        vocab_size = int(embed.shape[1])  # ne order: [hidden, vocab]
        stated = self._arch("vocab_size", None)
        if stated is not None and int(stated) != vocab_size:
            raise ConfigError(
                f"{self.path}: {self.architecture}.vocab_size is {stated} but "
                f"token_embd.weight has {vocab_size} rows"
            )
        hidden = int(self._arch("embedding_length"))
        heads = int(self._arch("attention.head_count"))
        head_dim = int(self._arch("attention.key_length", hidden // heads))
        rotary = int(self._arch("rope.dimension_count", head_dim))
        if rotary != head_dim:
            raise ConfigError(
                f"{self.path}: {self.architecture}.rope.dimension_count is {rotary}, "
                f"the head dim {head_dim}: partial rotary embeddings are not supported"
            )
        if "rope_freqs.weight" in self._tensors:
            raise ConfigError(
                f"{self.path}: tensor 'rope_freqs.weight' (llama3-style RoPE "
                "frequency factors) is not supported"
            )
        config: dict[str, Any] = {
            "model_type": self.architecture,
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": int(self._arch("feed_forward_length")),
            "num_hidden_layers": int(self._arch("block_count")),
            "num_attention_heads": heads,
            "num_key_value_heads": int(self._arch("attention.head_count_kv", heads)),
            "head_dim": head_dim,
            "rms_norm_eps": _float32(self._arch("attention.layer_norm_rms_epsilon", 1e-6)),
            "rope_theta": _float32(self._arch("rope.freq_base", 10000.0)),
            "max_position_embeddings": int(self._arch("context_length", 4096)),
            "tie_word_embeddings": "lm_head.weight" not in self._tensors,
            "attention_bias": "model.layers.0.self_attn.q_proj.bias" in self._tensors,
            "bos_token_id": self.value(TOKENIZER_KEYS["bos_token_id"], None),
            "eos_token_id": self.value(TOKENIZER_KEYS["eos_token_id"], None),
            "pad_token_id": self.value(TOKENIZER_KEYS["pad_token_id"], None),
        }
        scaling = self._rope_scaling()
        if scaling is not None:
            config["rope_scaling"] = scaling
        return config

    def _rope_scaling(self) -> dict[str, Any] | None:
        kind = self._arch("rope.scaling.type", None)
        factor = self._arch("rope.scaling.factor", None)
        if kind is None and self._arch("rope.scale_linear", None) is not None:  # older files
            kind, factor = "linear", self._arch("rope.scale_linear")
        if kind in (None, "none") or (kind == "linear" and factor in (None, 1.0)):
            return None
        if kind != "linear":
            raise ConfigError(
                f"{self.path}: {self.architecture}.rope.scaling.type {kind!r} is not "
                "supported (supported: none, linear)"
            )
        return {"type": "linear", "factor": _float32(factor)}

    def model_config(self, **overrides) -> ModelConfig:
        return ModelConfig.from_hf_dict(self.hf_config(), source=f"{self.path} (GGUF metadata)", **overrides)

    # ---- tensors, as the HF loader reads them ----
    def keys(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in reversed(self._tensors[name].shape))

    def get(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        # F32 dequantizes to a view of the memory map: copy so the caller owns its array.
        array = np.array(gguf.quants.dequantize(tensor.data, tensor.tensor_type), np.float32)
        array = array.reshape(self.shape(name))
        if self.architecture == "llama" and (".self_attn.q_proj." in name or ".self_attn.k_proj." in name):
            heads = self._arch("attention.head_count")
            if ".k_proj." in name:
                heads = self._arch("attention.head_count_kv", heads)
            array = unpermute_rotary(array, int(heads))
        return array

    def tensor_files(self) -> dict[str, GGUFModel]:
        """HF tensor name -> this file, the mapping `pretrained.load_params` reads from."""
        return {name: self for name in self._tensors}

    # ---- tokenizer and the rest of an HF directory ----
    def tokenizer_metadata(self) -> dict[str, Any]:
        meta = {name: self.value(key, None) for name, key in TOKENIZER_KEYS.items()}
        if meta["model"] is None or meta["tokens"] is None:
            raise ConfigError(
                f"{self.path}: no tokenizer in the metadata (tokenizer.ggml.model and "
                "tokenizer.ggml.tokens are needed)"
            )
        return meta

    def write_hf_metadata(self, cfg: ModelConfig, out: str | Path) -> None:
        """config.json, generation_config.json, tokenizer.json and tokenizer_config.json in `out`
        (created once the tokenizer is built): beside `params/` they make `out` an ordinary
        `convert` output."""
        from clarify_jax.hf.gguf_tokenizer import build_tokenizer

        out = Path(out)
        meta = self.tokenizer_metadata()
        try:
            tokenizer, tokenizer_config = build_tokenizer(meta)
        except ValueError as e:
            raise ConfigError(f"{self.path}: {e}") from None
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        (out / "config.json").write_text(json.dumps(cfg.to_hf_dict(), indent=2) + "\n")
        # llama.cpp ends generation on any end-of-generation id (EOS, end of turn, end of message).
        eos = list(
            dict.fromkeys(
                i for i in (meta["eos_token_id"], meta["eot_token_id"], meta["eom_token_id"]) if i is not None
            )
        )
        generation = {
            "bos_token_id": meta["bos_token_id"],
            "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        }
        if meta["pad_token_id"] is not None:
            generation["pad_token_id"] = meta["pad_token_id"]
        (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def _float32(value: float) -> float:
    """A float32 metadata value as the shortest decimal that reads back to it (1e-05, not
    9.999999747378752e-06), as the model's config.json had it."""
    return float(str(np.float32(value)))


def hf_name(gguf_name: str) -> str:
    """The transformers name of a llama.cpp tensor name; unknown names are kept as they are."""
    stem, _, kind = gguf_name.rpartition(".")
    if stem in GLOBAL_TENSORS and kind == "weight":
        return f"{GLOBAL_TENSORS[stem]}.weight"
    match = _LAYER_NAME.fullmatch(gguf_name)
    if match and match.group(2) in LAYER_TENSORS:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{LAYER_TENSORS[part]}.{kind}"
    return gguf_name


def unpermute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's `permute` of q/k rows (weights or biases): per head, its convert script
    interleaves the two rotate-half halves, `w.reshape(heads, 2, half, ...).swapaxes(1, 2)`."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
