"""Test setup: 8 fake CPU devices (set before JAX is imported) and tiny random HF models."""

import os

# Optimisation level 0: the tiny test models compile about twice as fast, and run fast enough.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

from tests.support.hf_models import save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Variant name -> directory of a tiny random transformers model, built once per session."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = save_tiny_model(variant, tmp_path_factory.mktemp(variant))
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def shared_data():
    """The team's benchmark copies (../shared/data beside the checkout); never downloaded."""
    from pathlib import Path

    path = Path(os.environ.get("CLARIFY_JAX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    assert (path / "mbpp" / "sanitized-mbpp.json").exists(), f"benchmark data not found at {path}"
    return path


@pytest.fixture(scope="session")
def gcs_emulator():
    from tests.support.gcs import GcsEmulator

    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator, monkeypatch):
    """A fresh gs:// bucket on the emulator; this process and its children are pointed at it."""
    import fsspec.config

    from tests.support.gcs import emulator_env

    for name, value in emulator_env(gcs_emulator.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "anon", "use_listings_cache": False})
    return gcs_emulator.bucket()
