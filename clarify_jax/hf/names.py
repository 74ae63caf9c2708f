"""The map between our params pytree and Hugging Face tensor names: transposes and reshapes only."""

from __future__ import annotations

import dataclasses

import numpy as np

from clarify_jax.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class TensorMap:
    path: tuple[str, ...]  # where the (layer-stacked) leaf sits in our params
    hf_name: str  # "{i}" stands for the layer index in per-layer tensors
    kernel_in_dims: int = 0  # >0: a linear kernel; HF stores [out, in], we store [in..., out...]

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.hf_name

    def hf_names(self, cfg: ModelConfig) -> list[str]:
        if not self.per_layer:
            return [self.hf_name]
        return [self.hf_name.format(i=i) for i in range(cfg.num_layers)]

    def hf_shape(self, ours: tuple[int, ...]) -> tuple[int, ...]:
        """HF shape of one tensor given our shape of one layer's slice."""
        if not self.kernel_in_dims:
            # Biases are [heads, head_dim] here and flat in HF; embeddings and norms match.
            return (int(np.prod(ours)),) if self.path[-1] == "bias" else tuple(ours)
        inputs = int(np.prod(ours[: self.kernel_in_dims]))
        return (int(np.prod(ours)) // inputs, inputs)

    def from_hf(self, tensor: np.ndarray, ours: tuple[int, ...]) -> np.ndarray:
        if self.kernel_in_dims:
            tensor = tensor.T
        return tensor.reshape(ours)

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        if self.kernel_in_dims:
            inputs = int(np.prod(array.shape[: self.kernel_in_dims]))
            return array.reshape(inputs, -1).T
        return array.reshape(self.hf_shape(array.shape))


def tensor_maps(cfg: ModelConfig) -> list[TensorMap]:
    """All tensors of a model, in the order HF writes them."""
    layer = "model.layers.{i}."
    maps = [TensorMap(("embed_tokens", "embedding"), "model.embed_tokens.weight")]
    for norm in ("input_layernorm", "post_attention_layernorm"):
        maps.append(TensorMap(("layers", norm, "scale"), layer + norm + ".weight"))
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        maps.append(
            TensorMap(
                ("layers", "self_attn", proj, "kernel"),
                layer + f"self_attn.{proj}.weight",
                2 if proj == "o_proj" else 1,
            )
        )
        if cfg.attention_bias and proj != "o_proj":
            maps.append(TensorMap(("layers", "self_attn", proj, "bias"), layer + f"self_attn.{proj}.bias"))
    for proj in ("gate_proj", "up_proj", "down_proj"):
        maps.append(TensorMap(("layers", "mlp", proj, "kernel"), layer + f"mlp.{proj}.weight", 1))
    maps.append(TensorMap(("norm", "scale"), "model.norm.weight"))
    if not cfg.tie_word_embeddings:
        maps.append(TensorMap(("lm_head", "kernel"), "lm_head.weight", 1))
    return maps


# Tensors some checkpoints carry that the model recomputes or does not use.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def get_path(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
