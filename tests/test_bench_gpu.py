"""scripts/bench_gpu.py, the accelerator checks, run on the CPU with a tiny float32 model: both sides
must start from the same loss and decode the same tokens, and the JSON's arithmetic must follow
from its own timings (the script is meant to be run once, unattended, on a lent GPU)."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench_gpu  # noqa: E402

from clarify_jax.train import flops  # noqa: E402

TINY = "--shape custom --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 128 --vocab 256"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "checks.json"
    args = f"{TINY} --batch 2 --seq 32 --prompt 8 --new-tokens 6 --reps 2 --warmup 1 --dtype float32"
    result = bench_gpu.main(bench_gpu.parse([*args.split(), "--out", str(out)]))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))  # the file holds the printed JSON
    return result


def test_both_sides_train_the_same_model_on_the_same_batch(result):
    train = result["train"]
    assert train["first_loss_difference"] < 1e-4
    # Weights 1 and 1 on the clarify and code means, each about ln(256) for a random model.
    assert train["ours"]["first_loss"] == pytest.approx(2 * math.log(256), abs=0.1)
    assert train["ours"]["mfu"] is None and train["mfu_goal_met"] is None  # no known peak on a CPU


def test_training_figures_follow_from_the_timings(result):
    train = result["train"]
    tokens = train["batch"] * train["seq"]
    for side in ("ours", "reference"):
        figures = train[side]
        assert len(figures["times_s"]) == 2
        assert figures["tokens_per_s"] == pytest.approx(tokens / figures["median_s"])
        assert figures["flops_per_s"] == pytest.approx(train["flops_per_token"] * figures["tokens_per_s"])
    assert train["ratio_ours_over_reference"] == pytest.approx(
        train["reference"]["median_s"] / train["ours"]["median_s"]
    )


def test_both_decode_layouts_give_the_reference_tokens(result):
    decode = result["decode"]
    assert len(decode["reference"]["tokens"]) == 6
    assert decode["same_tokens"] == {"layer_scan": True, "per_layer": True}
    best = decode["ours_best_layout"]
    assert decode["ratio_ours_over_reference"] == pytest.approx(
        decode["reference"]["seconds_per_token"] / decode["ours"][best]["seconds_per_token"]
    )
    params = result["model"]["params"]
    assert decode["ours"]["weight_bytes"] == 4 * params  # float32
    assert decode["bound_s_per_token"] is None and decode["bound_goal_met"] is None


def test_the_chip_tables_know_the_lent_gpu():
    class H200:
        device_kind = "NVIDIA H200"

    class V5e:
        device_kind = "TPU v5 lite"

    assert flops.peak_memory_bandwidth(H200()) == 4.8e12 and flops.peak_flops(H200()) == 989e12
    assert flops.peak_memory_bandwidth(V5e()) == 819e9  # "TPU v5 lite" before "TPU v5"
