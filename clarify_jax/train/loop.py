"""`clarify-jax train`: stages of jitted steps on the joint loss, with checkpoints, resume and logs."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from clarify_jax.checkpoints.average import write_average
from clarify_jax.checkpoints.load import load_model
from clarify_jax.checkpoints.run_dir import (
    AVERAGED_DIR,
    CHECKPOINTS_DIR,
    MODEL_DIR,
    PLOT_FILE,
    RUN_CONFIG_FILE,
    RunCheckpoints,
    averaged_steps,
)
from clarify_jax.data.pipeline import make_global_batch
from clarify_jax.hf.pretrained import TOKENIZER_FILES
from clarify_jax.hf.tokenizer import Tokenizer
from clarify_jax.model.config import ModelConfig
from clarify_jax.model.lora import init_lora_params
from clarify_jax.parallel.mesh import make_mesh
from clarify_jax.parallel.sharding import LogicalSharding
from clarify_jax.train.config import TrainConfig
from clarify_jax.train.flops import peak_flops, training_flops_per_token
from clarify_jax.train.inputs import TrainInputs
from clarify_jax.train.metrics_log import MetricsLog, plot_losses
from clarify_jax.train.optimizer import make_optimizer
from clarify_jax.train.step import Trainer, loss_weights
from clarify_jax.util.storage import OutputDir, is_remote, local_copy, output_dir


class TrainConfigError(ValueError):
    """A training config that cannot run on these devices or this data."""


def initialize_distributed(config: TrainConfig) -> None:
    d = config.distributed
    if not d.initialize:
        return
    if d.cpu_collectives != "none":
        jax.config.update("jax_cpu_collectives_implementation", d.cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=d.coordinator_address, num_processes=d.num_processes, process_id=d.process_id
    )


def check_batch(config: TrainConfig, sharding: LogicalSharding) -> None:
    """Batch sizes that the mesh, the hosts and the accumulation can split evenly."""
    batch, accum = config.data.batch_size, config.grad_accum
    shards = math.prod(sharding.mesh.shape[a] for a in ("data", "fsdp"))
    if accum < 1 or batch % accum:
        raise TrainConfigError(f"data.batch_size {batch} is not divisible by grad_accum {accum}")
    if (batch // accum) % shards:
        raise TrainConfigError(
            f"micro-batch of {batch // accum} rows (batch_size {batch} / grad_accum {accum}) is not "
            f"divisible by the {shards} batch shards of mesh {config.mesh} (data x fsdp)"
        )
    if batch % jax.process_count():
        raise TrainConfigError(f"data.batch_size {batch} is not divisible by the {jax.process_count()} hosts")
    if not config.stages or any(stage.steps < 1 for stage in config.stages):
        raise TrainConfigError("every stage needs steps >= 1")


def check_average(config: TrainConfig) -> None:
    """An `average_last` whose checkpoints will be there at the end."""
    if config.average_last == 1:
        return
    if not 1 < config.average_last <= config.keep_checkpoints or config.checkpoint_every < 1:
        raise TrainConfigError(
            f"average_last {config.average_last} needs checkpoint_every >= 1 (it is "
            f"{config.checkpoint_every}) and keep_checkpoints >= average_last (it is "
            f"{config.keep_checkpoints}): the checkpoints it averages must still be there"
        )


def model_config(config: TrainConfig) -> ModelConfig:
    cfg = ModelConfig.from_hf_file(local_copy(config.model))
    lora = config.lora
    if lora.last_layers and not (lora.rank and lora.last_layers <= cfg.num_layers):
        raise TrainConfigError(
            f"lora.last_layers {lora.last_layers} needs LoRA (lora.rank > 0, it is {lora.rank}) and at "
            f"most the model's {cfg.num_layers} layers"
        )
    return cfg.replace(
        param_dtype=config.param_dtype,
        dtype=config.compute_dtype,
        remat=config.remat,
        frozen_layers=cfg.num_layers - lora.last_layers if lora.last_layers else 0,
        lora_rank=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        lora_targets=tuple(lora.targets),
    )


class _Preemption:
    """SIGTERM (a TPU VM being preempted) sets a flag; the loop saves and stops at the next step.
    On several hosts the flag is agreed on collectively, so all of them stop at the same step."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def should_stop(self) -> bool:
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.max(flags))

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def train(config: TrainConfig) -> dict[str, Any]:
    """Runs (or resumes) the configured stages; returns a summary of the run."""
    initialize_distributed(config)
    mesh = make_mesh(config.mesh)
    sharding = LogicalSharding(mesh)
    check_batch(config, sharding)
    check_average(config)
    cfg = model_config(config)
    tokenizer = Tokenizer(local_copy(config.tokenizer or config.model))
    inputs = TrainInputs(config.data, tokenizer, config.seed)
    inputs.check_mixtures(config.stages)
    optimizer, schedule = make_optimizer(config.stages, config.optimizer)
    trainer = Trainer(cfg, sharding, optimizer, schedule, config.grad_accum, config.seed)

    # Checkpoints go to --out through orbax (gs:// included); the other run files are written to
    # run_dir.local and pushed to a gs:// --out after each log record and at the end.
    with output_dir(config.out, skip=(CHECKPOINTS_DIR,)) as run_dir:
        checkpoints = RunCheckpoints(config.out, keep=config.keep_checkpoints)
        try:
            return _run(config, cfg, trainer, inputs, checkpoints, run_dir)
        finally:
            checkpoints.close()


def _run(
    config: TrainConfig,
    cfg: ModelConfig,
    trainer: Trainer,
    inputs: TrainInputs,
    checkpoints: RunCheckpoints,
    run_dir: OutputDir,
) -> dict[str, Any]:
    out = run_dir.local
    is_main = jax.process_index() == 0
    latest = checkpoints.latest_step()
    if latest is not None and not config.resume:
        raise TrainConfigError(
            f"{config.out} already holds checkpoints (latest step {latest}): pass --resume "
            "to continue that run, or choose another --out"
        )
    frozen = _load_frozen(config, cfg, trainer)
    state, step, data_stage, iterator = _start(config, cfg, trainer, inputs, checkpoints, latest)
    if is_main:
        _write_run_files(config, out)

    log = MetricsLog(out, resume_step=step if config.resume else None, enabled=is_main)
    flops_per_token = training_flops_per_token(cfg, config.data.seq_len, frozen_base=trainer.lora)
    run = _RunState(config, trainer, inputs, checkpoints, log, run_dir, frozen, flops_per_token, peak_flops())
    preemption = _Preemption()
    bar = tqdm(
        total=config.total_steps, initial=step, desc="train", disable=not (config.progress and is_main)
    )
    summary: dict[str, Any] = {"preempted": False}
    timer = _StepTimer()
    weights, current = None, None
    try:
        while step < config.total_steps:
            index = config.stage_at(step)
            stage = config.stages[index]
            if index != current:
                if iterator is None or data_stage != index:
                    iterator, data_stage = inputs.stage_iterator(stage, index), index
                weights = loss_weights(stage.clarify_weight, stage.code_weight, stage.decision_weight)
                current = index
                timer.new_stage()
            batch = make_global_batch(next(iterator), trainer.sharding)
            state, metrics = trainer.train_step(state, frozen, batch, weights)
            step += 1
            timer.stepped(state)
            bar.update(1)
            record = run.maybe_log(step, index, metrics, timer)
            if record is not None:
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record.get('tokens_per_s', 0):.0f}")
            run.maybe_eval(step, state, stage, timer)
            saved = run.maybe_checkpoint(step, state, iterator, index)
            if preemption.should_stop():
                if not saved:
                    checkpoints.save(state, iterator, _meta(config, index))
                checkpoints.wait()
                print(f"\nSIGTERM: saved step {step} under {checkpoints.directory}; rerun with --resume")
                summary["preempted"] = True
                return dict(summary, step=step)
        if inputs.validation:
            record = _evaluate(trainer, state, frozen, inputs, config, config.stages[-1])
            log.write("validation", step, record)
            summary["validation"] = record
        if checkpoints.latest_step() != step:
            checkpoints.save(state, iterator, _meta(config, config.stage_at(step - 1)))
        checkpoints.wait()
        if config.average_last > 1:
            averaged = checkpoints.steps()[-config.average_last :]
            if averaged_steps(config.out) != averaged:  # a rerun of a finished run has it already
                print(f"averaging the weights of steps {averaged} into {config.out}/{AVERAGED_DIR}")
                write_average(
                    config.out, averaged, trainer.cfg, trainer.abstract_state()["params"], run.frozen
                )
            summary["averaged_steps"] = averaged
        if is_main:
            plot_losses(log.path, out / PLOT_FILE)
            summary["plot"] = f"{config.out}/{PLOT_FILE}"
        return dict(summary, step=step)
    finally:
        bar.close()
        log.close()
        preemption.restore()


def _start(
    config: TrainConfig,
    cfg: ModelConfig,
    trainer: Trainer,
    inputs: TrainInputs,
    checkpoints: RunCheckpoints,
    latest: int | None,
):
    """(state, step, stage of the data iterator, iterator): fresh, or restored from `latest` with
    the iterator where it was when the stage it belongs to is still the current one."""
    if not (config.resume and latest is not None):
        return trainer.init_state(_initial_trainable(config, cfg, trainer)), 0, None, None
    data_stage = checkpoints.read_meta(latest).get("stage")
    iterator = None
    if data_stage == config.stage_at(latest):
        iterator = inputs.stage_iterator(config.stages[data_stage], data_stage)
    state, _ = checkpoints.restore(latest, trainer.abstract_state(), iterator)
    print(f"resumed from {checkpoints.directory / str(latest)} (step {latest})")
    return state, latest, data_stage, iterator


class _StepTimer:
    """Seconds per step and tokens per second since the last log. The first step of a stage is
    left out: it compiles (or waits for the new iterator's first batch)."""

    def __init__(self):
        self.start, self.steps = None, 0

    def new_stage(self) -> None:
        self.start, self.steps = None, 0

    def stepped(self, state) -> None:
        if self.start is None:
            jax.block_until_ready(state)
            self.restart()
        else:
            self.steps += 1

    def restart(self) -> None:
        self.start, self.steps = time.perf_counter(), 0


@dataclasses.dataclass
class _RunState:
    """What the loop's periodic work needs: logging, validation and checkpoints, each on its own
    schedule."""

    config: TrainConfig
    trainer: Trainer
    inputs: TrainInputs
    checkpoints: RunCheckpoints
    log: MetricsLog
    run_dir: OutputDir
    frozen: Any
    flops_per_token: float
    peak: float | None

    def maybe_log(self, step: int, index: int, metrics, timer: _StepTimer) -> dict[str, Any] | None:
        """The train record, at every `log_every` steps and at the end of each stage."""
        stage_end = self.config.stage_start(index) + self.config.stages[index].steps
        if step % self.config.log_every and step != stage_end:
            return None
        record = _train_record(
            metrics,
            index,
            self.config.stages[index].name,
            timer.steps,
            timer.start,
            self.config,
            self.flops_per_token,
            self.peak,
        )
        self.log.write("train", step, record)
        self.run_dir.push()
        timer.restart()
        return record

    def maybe_eval(self, step: int, state, stage, timer: _StepTimer) -> None:
        """Validation at every `eval_every` steps but the last (the end of the run has its own)."""
        every = self.config.eval_every
        if every and step % every == 0 and step < self.config.total_steps:
            self.log.write(
                "validation",
                step,
                _evaluate(self.trainer, state, self.frozen, self.inputs, self.config, stage),
            )
            timer.restart()  # validation time is not training time

    def maybe_checkpoint(self, step: int, state, iterator, index: int) -> bool:
        """A checkpoint at every `checkpoint_every` steps; whether one was saved."""
        every = self.config.checkpoint_every
        if every and step % every == 0:
            self.checkpoints.save(state, iterator, _meta(self.config, index))
            return True
        return False


def _load_frozen(config: TrainConfig, cfg: ModelConfig, trainer: Trainer):
    """The frozen LoRA base (loaded on every run, resume included); {} for full fine-tuning."""
    if not trainer.lora:
        return {}
    _, base = load_model(config.model, dtype=config.param_dtype, sharding=trainer.sharding)
    return base


def _initial_trainable(config: TrainConfig, cfg: ModelConfig, trainer: Trainer):
    if trainer.lora:
        return init_lora_params(cfg, jax.random.key(config.seed), trainer.param_shardings[0])
    _, params = load_model(config.model, dtype=config.param_dtype, sharding=trainer.sharding)
    return params


def _train_record(
    metrics, stage_index, stage_name, window_steps, window_start, config, flops_per_token, peak
) -> dict[str, Any]:
    record = {k: float(v) for k, v in jax.device_get(metrics).items()}
    record.update(stage=stage_index, stage_name=stage_name)
    if window_start is not None and window_steps:
        elapsed = time.perf_counter() - window_start
        tokens_per_s = window_steps * config.data.batch_size * config.data.seq_len / elapsed
        record.update(
            step_time_s=elapsed / window_steps,
            tokens_per_s=tokens_per_s,
            flops_per_s=tokens_per_s * flops_per_token,
        )
        if peak:
            record["mfu"] = record["flops_per_s"] / (peak * jax.device_count())
    return record


def _evaluate(trainer: Trainer, state, frozen, inputs: TrainInputs, config: TrainConfig, stage) -> dict:
    """Mean cross-entropy and accuracy per kind over the validation set, and the stage's weighted loss."""
    totals: dict[str, float] = {}
    for host_batch in inputs.validation_batches(config.eval_batches):
        sums = trainer.eval_step(state["params"], frozen, make_global_batch(host_batch, trainer.sharding))
        for key, value in jax.device_get(sums).items():
            totals[key] = totals.get(key, 0.0) + float(value)
    record: dict[str, Any] = {}
    weighted = 0.0
    for kind, weight in (
        ("clarify", stage.clarify_weight),
        ("code", stage.code_weight),
        ("decision", stage.decision_weight),
    ):
        tokens = totals.get(f"tokens/{kind}", 0.0)
        record[f"tokens/{kind}"] = tokens
        if tokens:
            record[f"loss/{kind}"] = totals[f"cross_entropy/{kind}"] / tokens
            record[f"accuracy/{kind}"] = totals[f"correct/{kind}"] / tokens
            weighted += weight * record[f"loss/{kind}"]
    record["loss"] = weighted
    return record


def _meta(config: TrainConfig, stage_index: int) -> dict[str, Any]:
    """What a checkpoint needs beside its arrays: the stage whose iterator it holds, the base model
    (LoRA export merges into it), the LoRA settings and the whole run config."""
    return {
        "stage": stage_index,
        "model": str(config.model) if is_remote(config.model) else str(Path(config.model).absolute()),
        "lora": dataclasses.asdict(config.lora),
        "param_dtype": config.param_dtype,
        "config": _config_json(config),
    }


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _write_run_files(config: TrainConfig, out: Path) -> None:
    """The run's config, and the model's config.json and tokenizer files under out/model/, so a
    checkpoint of this run can be exported to Hugging Face format on its own."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_CONFIG_FILE).write_text(json.dumps(_config_json(config), indent=2) + "\n")
    model_out = out / MODEL_DIR
    model_out.mkdir(exist_ok=True)
    for source in (local_copy(config.model), local_copy(config.tokenizer or config.model)):
        for name in ("config.json", "generation_config.json") + TOKENIZER_FILES:
            if (source / name).exists():
                shutil.copyfile(source / name, model_out / name)
