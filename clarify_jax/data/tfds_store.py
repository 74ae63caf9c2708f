"""Synthesized rows as a TFDS dataset in ArrayRecord format, built and read without TensorFlow.

Each example holds the row's id, problem id and type, and the whole row as JSON text (`record`),
so the Grain pipeline reads it with random access through `tfds.data_source`.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

DATASET_NAME = "clarify_dialogues"
VERSION = "1.0.0"


@functools.cache  # TFDS registers builder classes by name: define ours once per process
def _builder_class():
    import tensorflow_datasets as tfds

    class ClarifyDialogues(tfds.core.GeneratorBasedBuilder):
        """Clarification-aware dialogues (ClarifyCoder-style synthesis)."""

        VERSION = tfds.core.Version(VERSION)

        def __init__(self, *, rows: dict[str, list[dict[str, Any]]], settings: dict[str, Any], **kwargs):
            self._rows, self._settings = rows, settings
            super().__init__(**kwargs)

        def _info(self):
            text = tfds.features.Text()
            return tfds.core.DatasetInfo(
                builder=self,
                description="Original problems with code answers and ambiguous / inconsistent / "
                "incomplete rewrites with clarifying questions; `record` is the row as JSON.",
                features=tfds.features.FeaturesDict(
                    {"id": text, "problem_id": text, "type": text, "record": text}
                ),
                metadata=tfds.core.MetadataDict(settings=self._settings),
            )

        def _split_generators(self, dl_manager):
            # TFDS cannot write a split without examples (`--validation-fraction 0`): it is left out.
            return {split: self._generate_examples(rows) for split, rows in self._rows.items() if rows}

        def _generate_examples(self, rows):
            for row in rows:
                yield (
                    row["id"],
                    {
                        "id": row["id"],
                        "problem_id": row["problem_id"],
                        "type": row["type"],
                        "record": json.dumps(row, ensure_ascii=False),
                    },
                )

    return ClarifyDialogues


def write_tfds(rows: dict[str, list[dict[str, Any]]], data_dir: str | Path, settings: dict[str, Any]) -> Path:
    """Build the dataset under `data_dir` (replacing an earlier build); returns its directory."""
    data_dir = Path(data_dir)
    shutil.rmtree(data_dir / DATASET_NAME, ignore_errors=True)
    builder = _builder_class()(
        rows=rows, settings=settings, data_dir=str(data_dir), file_format="array_record"
    )
    builder.download_and_prepare()
    return Path(builder.data_dir)


def read_tfds(dataset_dir: str | Path, split: str):
    """A random-access source of decoded rows (dicts) of one split, e.g. for Grain."""
    import tensorflow_datasets as tfds

    return _DecodedSource(tfds.builder_from_directory(str(dataset_dir)).as_data_source(split=split))


def tfds_settings(dataset_dir: str | Path) -> dict[str, Any]:
    import tensorflow_datasets as tfds

    return dict(tfds.builder_from_directory(str(dataset_dir)).info.metadata["settings"])


class _DecodedSource:
    def __init__(self, source):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return json.loads(self._source[index]["record"])
