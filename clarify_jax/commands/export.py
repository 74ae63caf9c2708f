"""`clarify-jax export`: any model form into a Hugging Face directory, with a model card; optionally
pushed to the Hub."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clarify_jax.checkpoints.convert import export_to_hf
from clarify_jax.commands.model_card import load_eval_summary, write_model_card
from clarify_jax.hf.hub import check_push, push_folder
from clarify_jax.model.config import Dtype
from clarify_jax.parallel.sharding import optional_sharding
from clarify_jax.util.storage import local_copy


@dataclasses.dataclass
class ExportConfig:
    """Export a params checkpoint (from `convert`) or an HF directory as a Hugging Face directory
    that transformers' AutoModelForCausalLM.from_pretrained loads."""

    source: str
    """A directory written by `convert`, a Hugging Face model directory, or a training run from
    `train` (its latest checkpoint; or name one: RUN/checkpoints/STEP), local or gs://. LoRA
    adapters are merged."""
    out: Path
    """Output Hugging Face directory (created)."""
    dtype: Dtype | None = None
    """Dtype of the written tensors (default: as stored in the source)."""
    max_shard_size: str = "5GB"
    """Largest safetensors file; more tensors go to further shards with an index."""
    mesh: str | None = None
    """Spread the params over the devices while exporting (data,fsdp,tensor sizes, e.g. 1,-1,1)."""
    push_to_hub: str | None = None
    """Then upload OUT to this Hugging Face model repository (user/name or org/name; created if
    missing). The token is read from the HF_TOKEN environment variable."""
    private: bool = False
    """Create the repository private (an existing repository keeps its visibility)."""
    commit_message: str = "Upload model exported by clarify-jax"
    """Message of the Hub commit."""
    eval_summary: tuple[Path, ...] = ()
    """summary.json files (or their folders) of `clarify-jax evaluate` runs, shown as evaluation
    tables in the model card (several: one row per model, e.g. the base model and this one)."""
    base_model: str | None = None
    """Hub id of the model the training started from, for the card (default: inferred from the
    run's --model where possible)."""


def run(config: ExportConfig) -> None:
    # Checked before the export, which can take long: a push must not fail only at its end.
    token = None
    if config.push_to_hub:
        token = check_push(config.push_to_hub)
    summaries = [load_eval_summary(path) for path in config.eval_summary]
    source = local_copy(config.source)
    out = export_to_hf(
        source,
        config.out,
        dtype=config.dtype,
        max_shard_size=config.max_shard_size,
        sharding=optional_sharding(config.mesh),
    )
    card = write_model_card(
        out, source, repo_id=config.push_to_hub, eval_summaries=summaries, base_model=config.base_model
    )
    print(f"wrote {out} (model card: {card})")
    if config.push_to_hub:
        url = push_folder(
            out, config.push_to_hub, token=token, private=config.private, commit_message=config.commit_message
        )
        print(f"uploaded to {config.push_to_hub}: {url}")
