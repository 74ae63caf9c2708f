"""The `clarify-jax` command: one subcommand per stage, each a dataclass read by tyro."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

import tyro

Dtype = Literal["float32", "bfloat16"]


@dataclasses.dataclass
class Convert:
    """Convert a Hugging Face model directory into an orbax checkpoint of the params.

    The output directory gets `params/` (orbax) plus the source's config.json,
    generation_config.json and tokenizer files, so `export` can turn it back into an HF model.
    """

    model: Path
    """Hugging Face model directory: config.json and model.safetensors (or sharded
    files with model.safetensors.index.json)."""
    out: Path
    """Output directory (created)."""
    dtype: Dtype = "bfloat16"
    """Dtype of the stored params."""

    def run(self) -> None:
        from clarify_jax.convert import hf_to_checkpoint
        out = hf_to_checkpoint(self.model, self.out, dtype=self.dtype)
        print(f"wrote {out}")


@dataclasses.dataclass
class Export:
    """Export a params checkpoint (from `convert`) or an HF directory as a Hugging Face directory
    that transformers' AutoModelForCausalLM.from_pretrained loads."""

    source: Path
    """A directory written by `convert`, or a Hugging Face model directory."""
    out: Path
    """Output Hugging Face directory (created)."""
    dtype: Dtype | None = None
    """Dtype of the written tensors (default: as stored in the source)."""
    max_shard_size: str = "5GB"
    """Largest safetensors file; more tensors go to further shards with an index."""

    def run(self) -> None:
        from clarify_jax.convert import export_to_hf
        out = export_to_hf(self.source, self.out, dtype=self.dtype,
                           max_shard_size=self.max_shard_size)
        print(f"wrote {out}")


SUBCOMMANDS = {
    "convert": Convert,
    "export": Export,
}


def main(argv: list[str] | None = None) -> None:
    command = tyro.extras.subcommand_cli_from_dict(
        SUBCOMMANDS, prog="clarify-jax", args=argv,
        description="Clarification-aware fine-tuning of code LLMs in JAX.")
    try:
        command.run()
    except (ValueError, FileNotFoundError) as e:
        # Our errors name the file and what was expected; a traceback adds nothing for users.
        print(f"clarify-jax: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
