"""Load a Hugging Face model directory into our params, and save params back as one."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from clarify_jax.hf.names import IGNORED_SUFFIXES, TensorMap, get_path, set_path, tensor_maps
from clarify_jax.hf.safetensors_io import CheckpointError, SafetensorsFile, write_safetensors
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.transformer import Params, param_axes, param_shapes
from clarify_jax.parallel.sharding import LogicalSharding

if TYPE_CHECKING:
    from clarify_jax.hf.gguf_io import GGUFModel

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)


class TensorFile(Protocol):
    """Where HF-named tensors are read from: a safetensors file, or a GGUF file (`gguf_io`)."""

    path: Path

    def shape(self, name: str) -> tuple[int, ...]: ...

    def get(self, name: str) -> np.ndarray: ...


def _open_files(model_dir: Path) -> dict[str, SafetensorsFile]:
    """Tensor name -> the file that holds it."""
    index_path = model_dir / INDEX_FILE
    if index_path.exists():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index_path}: not a safetensors index ({e})") from None
        files: dict[str, SafetensorsFile] = {}
        located = {}
        for name, filename in weight_map.items():
            if filename not in files:
                if not (model_dir / filename).exists():
                    raise CheckpointError(
                        f"{index_path}: lists {filename} (for tensor {name!r}), which is not in the directory"
                    )
                files[filename] = SafetensorsFile(model_dir / filename)
            if name not in files[filename]:
                raise CheckpointError(
                    f"{model_dir / filename}: tensor {name!r} is listed in "
                    f"{INDEX_FILE} but missing from the file"
                )
            located[name] = files[filename]
        return located
    paths = (
        [model_dir / SINGLE_FILE]
        if (model_dir / SINGLE_FILE).exists()
        else sorted(model_dir.glob("*.safetensors"))
    )
    if not paths:
        found = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
        raise CheckpointError(
            f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE} (found: {found}); "
            "PyTorch .bin checkpoints must be re-saved as safetensors first"
        )
    located = {}
    for path in paths:
        f = SafetensorsFile(path)
        located.update({name: f for name in f.keys()})
    return located


def load_pretrained(
    path: str | Path,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    sharding: LogicalSharding | None = None,
    progress: bool = False,
    **config_overrides,
) -> tuple[ModelConfig, Params]:
    """(config, params) from an HF directory or a GGUF file; params in `dtype`, streamed one
    tensor at a time.

    With `sharding`, each stacked tensor goes straight to its place on the mesh, so host memory
    holds one tensor (stacked over layers) beyond what the devices hold.
    """
    model_dir = Path(path)
    if model_dir.is_file():
        from clarify_jax.hf.gguf_io import GGUFModel, is_gguf

        if is_gguf(model_dir):
            return load_gguf(
                GGUFModel(model_dir), dtype, compute_dtype, sharding, progress, **config_overrides
            )
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: not a directory")
    cfg = ModelConfig.from_hf_file(
        model_dir, param_dtype=dtype, dtype=compute_dtype or dtype, **config_overrides
    )
    return cfg, load_params(cfg, _open_files(model_dir), model_dir, "config.json", dtype, sharding, progress)


def load_gguf(
    gguf: GGUFModel,
    dtype: str = "float32",
    compute_dtype: str | None = None,
    sharding: LogicalSharding | None = None,
    progress: bool = False,
    **config_overrides,
) -> tuple[ModelConfig, Params]:
    """(config, params) from an opened GGUF file, dequantized to `dtype`."""
    cfg = gguf.model_config(param_dtype=dtype, dtype=compute_dtype or dtype, **config_overrides)
    return cfg, load_params(
        cfg, gguf.tensor_files(), gguf.path, "the GGUF metadata", dtype, sharding, progress
    )


def load_params(
    cfg: ModelConfig,
    located: Mapping[str, TensorFile],
    origin: Path,
    described_by: str,
    dtype: str = "float32",
    sharding: LogicalSharding | None = None,
    progress: bool = False,
) -> Params:
    """Params of `cfg` from HF-named tensors (name -> the file that holds it), stacked over layers.

    `origin` and `described_by` (what says which tensors there must be) name the source in errors.
    """
    shapes, axes = param_shapes(cfg), param_axes(cfg)
    maps = tensor_maps(cfg)
    target = np.dtype(jnp.dtype(dtype))
    params: Params = {}
    for m in tqdm(maps, desc="loading", disable=not progress):
        leaf = get_path(shapes, m.path)
        stacked = np.empty(leaf.shape, target)
        slice_shape = leaf.shape[1:] if m.per_layer else leaf.shape
        for i, name in enumerate(m.hf_names(cfg)):
            tensor = _read(located, name, m, slice_shape, origin, described_by)
            if m.per_layer:
                stacked[i] = m.from_hf(tensor, slice_shape)
            else:
                stacked[...] = m.from_hf(tensor, slice_shape)
        set_path(params, m.path, _place(stacked, get_path(axes, m.path), sharding))
        del stacked
    expected = {n for m in maps for n in m.hf_names(cfg)}
    unused = [
        n
        for n in located
        if n not in expected
        and not n.endswith(IGNORED_SUFFIXES)
        and not (cfg.tie_word_embeddings and n == "lm_head.weight")
    ]
    if unused:
        log.warning(
            "%s: %d tensors not used by a %s model, e.g. %s", origin, len(unused), cfg.model_type, unused[:3]
        )
    return params


def _read(
    located: Mapping[str, TensorFile], name: str, m: TensorMap, slice_shape, origin: Path, described_by: str
) -> np.ndarray:
    if name not in located:
        raise CheckpointError(f"{origin}: tensor {name!r} is missing ({described_by} asks for it)")
    f = located[name]
    want = m.hf_shape(slice_shape)
    if f.shape(name) != want:
        raise CheckpointError(
            f"{f.path}: tensor {name!r} has shape {list(f.shape(name))}, {described_by} implies {list(want)}"
        )
    return f.get(name)


def _place(array: np.ndarray, axes, sharding: LogicalSharding | None) -> jax.Array:
    if sharding is None:
        return jax.device_put(array)
    named = sharding.named(tuple(axes), array.shape)
    # Each process fills only its own shards; works on one host and on a pod alike.
    return jax.make_array_from_callback(array.shape, named, lambda index: array[index])


def _to_host(x: jax.Array) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    text = size.strip().upper()
    for unit, scale in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * scale)
    return int(text)


def save_pretrained(
    cfg: ModelConfig,
    params: Params,
    out_dir: str | Path,
    *,
    dtype: str | None = None,
    max_shard_size: int | str = "5GB",
    source_dir: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write an HF directory that `AutoModelForCausalLM.from_pretrained` loads.

    `source_dir` (the directory the model came from) supplies unknown config.json keys,
    generation_config.json and the tokenizer files. Tensors are fetched and written one at a time.
    """
    out = Path(out_dir)
    dtype = dtype or cfg.param_dtype
    np_dtype = np.dtype(jnp.dtype(dtype))
    maps = tensor_maps(cfg)
    shapes = param_shapes(cfg)
    plan: list[tuple[str, tuple[int, ...], TensorMap, int | None]] = []
    for m in maps:
        leaf_shape = get_path(shapes, m.path).shape
        slice_shape = leaf_shape[1:] if m.per_layer else leaf_shape
        for i, name in enumerate(m.hf_names(cfg)):
            plan.append((name, m.hf_shape(slice_shape), m, i if m.per_layer else None))
    limit = _parse_size(max_shard_size)
    shards: list[list[int]] = [[]]
    used = 0
    for k, (_, shape, _, _) in enumerate(plan):
        nbytes = int(np.prod(shape)) * np_dtype.itemsize
        if shards[-1] and used + nbytes > limit:
            shards.append([])
            used = 0
        shards[-1].append(k)
        used += nbytes
    if jax.process_index() == 0:
        out.mkdir(parents=True, exist_ok=True)

    host_leaves: dict[tuple[str, ...], np.ndarray] = {}

    def fetch(name: str) -> np.ndarray:
        _, _, m, layer = by_name[name]
        # A stacked leaf is pulled to the host once and then sliced per layer.
        if m.path not in host_leaves:
            host_leaves.clear()
            host_leaves[m.path] = _to_host(get_path(params, m.path))
        array = host_leaves[m.path]
        return m.to_hf(array[layer] if layer is not None else array)

    by_name = {name: (name, shape, m, layer) for name, shape, m, layer in plan}
    weight_map = {}
    names = [f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors" for s in range(len(shards))]
    if len(shards) == 1:
        names = [SINGLE_FILE]
    for filename, members in tqdm(list(zip(names, shards)), desc="saving", disable=not progress):
        specs = [(plan[k][0], plan[k][1], np_dtype) for k in members]
        if jax.process_index() == 0:
            write_safetensors(out / filename, specs, fetch)
        else:
            for name, _, _ in specs:  # every process joins the all-gathers
                fetch(name)
        weight_map.update({plan[k][0]: filename for k in members})
    host_leaves.clear()
    if jax.process_index() != 0:
        return out
    if len(shards) > 1:
        total = sum(int(np.prod(shape)) * np_dtype.itemsize for _, shape, _, _ in plan)
        (out / INDEX_FILE).write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
        )
    elif (out / INDEX_FILE).exists():
        (out / INDEX_FILE).unlink()
    _write_metadata(cfg.replace(param_dtype=dtype), out, Path(source_dir) if source_dir else None)
    return out


def _write_metadata(cfg: ModelConfig, out: Path, source: Path | None) -> None:
    base = None
    if source is not None and (source / "config.json").exists():
        base = json.loads((source / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(cfg.to_hf_dict(base), indent=2) + "\n")
    if source is not None and (source / "generation_config.json").exists():
        shutil.copyfile(source / "generation_config.json", out / "generation_config.json")
    else:
        generation = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.to_hf_dict()["eos_token_id"]}
        if cfg.pad_token_id is not None:
            generation["pad_token_id"] = cfg.pad_token_id
        (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if source is not None:
        for name in TOKENIZER_FILES:
            if (source / name).exists() and (source / name).resolve() != (out / name).resolve():
                shutil.copyfile(source / name, out / name)
