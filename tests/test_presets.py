"""The 7B presets of configs/finetune_7b.py: the paper's recipe, a batch their mesh can split, and
a per-device memory estimate (clarify_jax/train/memory_estimate.py, shapes only) within their chip's."""

import math
import types

import pytest

from clarify_jax.train import memory_estimate
from clarify_jax.train.loop import check_average, check_batch
from clarify_jax.train.presets import load_presets

GRID = memory_estimate.load_config_module("finetune_7b")
TARGETS = memory_estimate.targets()
PRESETS = load_presets()
PUBLISHED = {
    "deepseek-coder-6.7b-instruct": 6_740_512_768,
    "CodeLlama-7b-Instruct": 6_738_546_688,
    "Qwen2.5-Coder-7B-Instruct": 7_615_616_512,
}


@pytest.fixture(scope="module")
def estimates():
    return {name: memory_estimate.estimate(PRESETS[name][1], target) for name, target in TARGETS.items()}


def test_grid_names_every_model_mode_and_chip():
    expected = {
        f"{model}-{mode}-{chip}"
        for model in ("deepseek-6.7b", "codellama-7b", "qwen2.5-coder-7b")
        for mode in ("lora", "full")
        for chip in ("v4-8", "v5e-16", "v5p-8", "8xh100")
    }
    assert set(TARGETS) == expected and expected <= set(PRESETS)
    assert {"deepseek-6.7b-lora-v5p-8", "qwen2.5-coder-7b-full-8xh100"} <= expected
    models = memory_estimate.load_config_module("models").HF_CONFIGS
    # test_real_configs checks these dicts against the published parameter counts.
    assert set(models) == {
        "deepseek-coder-6.7b-instruct",
        "CodeLlama-7b-Instruct",
        "Qwen2.5-Coder-7B-Instruct",
    }


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_preset_follows_the_recipe_and_splits_its_batch(name):
    config, chip = PRESETS[name][1], GRID.CHIPS[TARGETS[name].chip]
    assert (config.total_steps, config.stages[0].learning_rate) == (500, 1e-5)
    assert (config.data.batch_size, config.data.seq_len, config.compute_dtype) == (16, 2048, "bfloat16")
    if "-lora-" in name:
        assert (config.lora.rank, config.lora.alpha, config.param_dtype) == (16, 16.0, "bfloat16")
        assert set(config.lora.targets) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    else:
        assert config.lora.rank == 0
        # Float32 master weights wherever they fit (all but the v4-8; see configs/finetune_7b.py).
        assert config.param_dtype == ("bfloat16" if TARGETS[name].chip == "v4-8" else "float32")
    assert config.distributed.initialize == (chip.hosts > 1)
    # The trainer's rule, by hand and through `check_batch` with a stand-in mesh.
    sizes = dict(zip(("data", "fsdp", "tensor"), (int(s) for s in config.mesh.split(","))))
    assert math.prod(sizes.values()) == chip.chips
    micro = config.data.batch_size // config.grad_accum
    assert micro * config.grad_accum == config.data.batch_size
    assert micro % (sizes["data"] * sizes["fsdp"]) == 0 and config.data.batch_size % chip.hosts == 0
    check_batch(config, types.SimpleNamespace(mesh=types.SimpleNamespace(shape=sizes)))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_preset_fits_its_chip_with_headroom(name, estimates):
    result = estimates[name]
    assert result["fits"], (name, result["peak_bytes"] / 2**30, result["limit_bytes"] / 2**30)
    assert result["limit_bytes"] == pytest.approx(0.9 * result["memory_bytes"])
    assert result["num_params"] == PUBLISHED[GRID.TARGETS[name][0]]


def test_full_fine_tuning_state_bytes_are_exact(estimates):
    # deepseek-coder-6.7b on v5p-8, mesh 1,4,1, float32: every matrix splits its `embed` dimension
    # over the 4 fsdp chips; the 2 L + 1 = 65 RMSNorm scales of 4096 stay whole on each chip.
    terms = estimates["deepseek-6.7b-full-v5p-8"]["terms"]
    norms = 65 * 4096
    params = ((6_740_512_768 - norms) // 4 + norms) * 4
    assert params == 6_741_311_488
    assert terms["params_trainable"] == params and terms["params_frozen"] == 0
    assert terms["grads"] == params and terms["grad_accumulator"] == 0
    assert terms["optimizer"] == 2 * params + 2 * 4  # mu, nu in float32; two int32 step counters


@pytest.mark.parametrize(
    "model,adapters",
    [
        ("deepseek-6.7b", 32 * 4 * 2 * 4096 * 16),
        ("codellama-7b", 32 * 4 * 2 * 4096 * 16),
        ("qwen2.5-coder-7b", 28 * 16 * (4 * 3584 + 2 * 3584 + 2 * 512)),
    ],
)
def test_lora_state_bytes_are_exact(model, adapters, estimates):
    # 8xH100, mesh 8,1,1: the bfloat16 base whole on each GPU, float32 adapters and moments.
    terms = estimates[f"{model}-lora-8xh100"]["terms"]
    assert terms["params_frozen"] == PUBLISHED[GRID.MODELS[model]] * 2
    assert terms["params_trainable"] == terms["grads"] == adapters * 4
    assert terms["optimizer"] == 2 * adapters * 4 + 2 * 4


def test_script_reports_and_fails_on_a_preset_that_does_not_fit(capsys):
    assert memory_estimate.main(["deepseek-6.7b-lora-v5p-8", "codellama-7b-full-v5e-16"]) == 0
    out = capsys.readouterr().out
    assert "deepseek-6.7b-lora-v5p-8" in out and '"fits": true' in out
    # Float32 full fine-tuning replicated on every v5e chip (data parallelism alone): 100 GiB each.
    assert memory_estimate.main(["deepseek-6.7b-full-v5e-16", "--mesh", "16,1,1"]) == 1
    assert memory_estimate.main(["deepseek-6.7b-full-v5e-16", "--grad-accum", "3"]) == 2


def test_estimate_bounds_xla_on_a_tiny_compiled_train_step():
    """The real train step compiled on the 8 CPU devices: the estimate is an upper bound on XLA's
    per-device peak, and not a loose one (see the script's docstring for why float32)."""
    case = memory_estimate.CROSS_CHECK_CASES["full-data4-fsdp2-accum2-dots_no_batch"]
    config = memory_estimate.tiny_config(**case)
    predicted = memory_estimate.estimate(config, memory_estimate.Target(memory_estimate.TINY, 8, 1e12))
    xla = memory_estimate.xla_peak(config, memory_estimate.TINY)
    assert xla["peak_bytes"] <= predicted["peak_bytes"] <= 2 * xla["peak_bytes"]


def test_presets_keep_the_checkpoints_they_average():
    for _, config in PRESETS.values():
        check_average(config)
    # What the preset's description and the README say it averages.
    long = PRESETS["smollm2-135m-lora-long"][1]
    saved = range(long.checkpoint_every, long.total_steps + 1, long.checkpoint_every)
    assert list(saved)[-long.average_last :] == [120, 140, 160]
