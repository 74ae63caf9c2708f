"""Training inputs: named sources of synthesized rows, a Grain iterator per stage, validation batches."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import grain

from clarify_jax.data.pipeline import PipelineConfig, make_iterator
from clarify_jax.data.render import DialogueRenderer, RenderOptions
from clarify_jax.hf.tokenizer import Tokenizer
from clarify_jax.prompts import ROW_TYPES
from clarify_jax.train.config import DataConfig, Stage
from clarify_jax.util.jsonl import BadLine, json_lines
from clarify_jax.util.storage import local_copy


class InputError(ValueError):
    """A data source or mixture that cannot be read as configured."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    name: str
    path: str  # local, or gs://bucket/prefix
    types: tuple[str, ...] | None = None  # keep only rows of these `type`s

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """`name=path` or `name=path:type,type` (the path may be a gs:// URL)."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"data source {text!r}: expected name=path[:type,...]")
        path, sep, types = rest.rpartition(":")
        if not sep or "/" in types:  # no types: that colon is the URL's
            path, types = rest, ""
        if not types:
            return cls(name, path)
        wanted = tuple(t.strip() for t in types.split(",") if t.strip())
        unknown = sorted(set(wanted) - set(ROW_TYPES))
        if unknown:
            raise InputError(
                f"data source {text!r}: unknown row types {unknown}; choose from {', '.join(ROW_TYPES)}"
            )
        return cls(name, path, wanted)


def read_rows(spec: SourceSpec, split: str = "train") -> list[dict[str, Any]]:
    """The source's rows: a JSONL file, or a TFDS dataset directory from `synthesize` (`split`)."""
    try:
        path = local_copy(spec.path)
    except FileNotFoundError:
        raise InputError(f"data source {spec.name!r}: {spec.path} does not exist") from None
    if not path.exists():
        raise InputError(f"data source {spec.name!r}: {path} does not exist")
    if path.is_dir():
        from clarify_jax.data.tfds_store import read_tfds

        source = read_tfds(path, split)
        rows = [source[i] for i in range(len(source))]
    else:
        rows = []
        for line_number, row in json_lines(path):
            if isinstance(row, BadLine):
                raise InputError(str(row))
            if not isinstance(row.get("dialogue"), list):
                raise InputError(
                    f"{path}:{line_number}: expected a row with a 'dialogue' list "
                    "(as `clarify-jax synthesize` writes)"
                )
            rows.append(row)
    if spec.types is not None:
        rows = [row for row in rows if row.get("type") in spec.types]
    if not rows:
        raise InputError(
            f"data source {spec.name!r}: no rows in {path}"
            + (f" of type {', '.join(spec.types)}" if spec.types else "")
        )
    return rows


def parse_mixture(text: str, names: list[str]) -> dict[str, float]:
    """`name=weight,...` over the configured sources; empty means all sources equally."""
    if not text.strip():
        return {name: 1.0 for name in names}
    weights = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise InputError(
                f"mixture {text!r}: {part!r} is not name=weight over the sources {', '.join(names)}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise InputError(f"mixture {text!r}: weight {value!r} is not a number") from None
        if weights[name] < 0:
            raise InputError(f"mixture {text!r}: negative weight for {name!r}")
    if sum(weights.values()) <= 0:
        raise InputError(f"mixture {text!r}: weights sum to zero")
    return weights


class TrainInputs:
    """Loads every source once; gives each stage a fresh iterator over its own mixture."""

    def __init__(self, data: DataConfig, tokenizer: Tokenizer, seed: int):
        if not data.sources:
            raise InputError(
                "no training data: pass --data.sources name=path[:types] (e.g. from "
                "`clarify-jax synthesize`: out/train.jsonl)"
            )
        self.data, self.seed = data, seed
        specs = [SourceSpec.parse(text) for text in data.sources]
        duplicates = {s.name for s in specs if [t.name for t in specs].count(s.name) > 1}
        if duplicates:
            raise InputError(f"data sources named more than once: {sorted(duplicates)}")
        self.rows = {spec.name: read_rows(spec) for spec in specs}
        self.validation = [
            row for text in data.validation for row in read_rows(SourceSpec.parse(text), split="validation")
        ]
        self.render = DialogueRenderer(
            tokenizer,
            RenderOptions(
                format=data.row_format,
                round1_instruction=data.round1_instruction,
                answer_prefix=data.answer_prefix,
                first_turn_only=data.first_turn_only,
            ),
        )

    def check_mixtures(self, stages: tuple[Stage, ...]) -> None:
        for stage in stages:
            parse_mixture(stage.mixture, list(self.rows))

    def stage_iterator(self, stage: Stage, stage_index: int) -> grain.DatasetIterator:
        weights = parse_mixture(stage.mixture, list(self.rows))
        sources = [(self.rows[name], weight) for name, weight in weights.items() if weight > 0]
        config = PipelineConfig(
            batch_size=self.data.batch_size,
            seq_len=self.data.seq_len,
            seed=self.seed + 1000 * stage_index,
            too_long=self.data.too_long,
            prefetch_workers=self.data.prefetch_workers,
        )
        return make_iterator(sources, self.render, config)

    def validation_batches(self, limit: int = 0) -> Iterator[dict]:
        """One pass over the validation rows in file order (the last batch padded), at most
        `limit` batches when > 0."""
        if not self.validation:
            return iter(())
        config = PipelineConfig(
            batch_size=self.data.batch_size,
            seq_len=self.data.seq_len,
            shuffle=False,
            num_epochs=1,
            too_long=self.data.too_long,
        )
        iterator = make_iterator([(self.validation, 1.0)], self.render, config)
        return iter(batch for index, batch in zip(range(limit or 2**62), iterator))
