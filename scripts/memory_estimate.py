"""Per-device memory of a training preset on its chips, from shapes alone: the command line of
`clarify_jax.train.memory_estimate` (its docstring explains the estimate).

    python scripts/memory_estimate.py                       # every preset of configs/finetune_7b.py
    python scripts/memory_estimate.py qwen2.5-coder-7b-full-v5e-16
    python scripts/memory_estimate.py --cross-check         # formula vs XLA on tiny models (CPU)
"""

import os
import sys

if "--cross-check" in sys.argv:  # fake devices must be set up before JAX starts
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

from clarify_jax.train.memory_estimate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
