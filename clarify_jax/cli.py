"""The `clarify-jax` command: a table of subcommands, each a module of `clarify_jax.commands` with
a config dataclass (read by tyro) and `run(config)`."""

from __future__ import annotations

import dataclasses
import sys

import tyro

from clarify_jax.commands import chat, convert, evaluate, export, synthesize, tokenizer, train


@dataclasses.dataclass
class TokenizerTools:
    """Tokenizer tools; see `clarify-jax tokenizer train --help`."""


@dataclasses.dataclass
class TrainPresets:
    """Fine-tune a model: `clarify-jax train PRESET --model DIR --out DIR [overrides]`;
    `clarify-jax train --help` lists the presets."""


# name -> (config class, run). `train` and `tokenizer` parse the rest of the line themselves: the
# first picks a preset before its overrides, the second has subcommands of its own.
SUBCOMMANDS = {
    "convert": (convert.ConvertConfig, convert.run),
    "export": (export.ExportConfig, export.run),
    "synthesize": (synthesize.SynthesizeConfig, synthesize.run),
    "evaluate": (evaluate.EvaluateConfig, evaluate.run),
    "chat": (chat.ChatConfig, chat.run),
    "tokenizer": (TokenizerTools, None),
    "train": (TrainPresets, None),
}
TOKENIZER_SUBCOMMANDS = {"train": (tokenizer.TokenizerTrainConfig, tokenizer.run)}


def _pick(table: dict, prog: str, args: list[str], description: str):
    config = tyro.extras.subcommand_cli_from_dict(
        {name: cls for name, (cls, _) in table.items()}, prog=prog, args=args, description=description
    )
    return config, next(run for cls, run in table.values() if type(config) is cls)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        config, run = train.parse(argv[1:]), train.run
    elif argv[:1] == ["tokenizer"]:
        config, run = _pick(TOKENIZER_SUBCOMMANDS, "clarify-jax tokenizer", argv[1:], TokenizerTools.__doc__)
    else:
        config, run = _pick(
            SUBCOMMANDS, "clarify-jax", argv, "Clarification-aware fine-tuning of code LLMs in JAX."
        )
    try:
        run(config)
    except (ValueError, FileNotFoundError) as e:
        # Our errors name the file and what was expected; a traceback adds nothing for users.
        print(f"clarify-jax: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
