"""`--data.sources` entries: local paths and gs:// URLs, with and without row types."""

import pytest

from clarify_jax.train.inputs import InputError, SourceSpec


@pytest.mark.parametrize(
    "text, expected",
    [
        ("all=out/train.jsonl", ("all", "out/train.jsonl", None)),
        ("c=out/train.jsonl:original", ("c", "out/train.jsonl", ("original",))),
        ("q=gs://b/d/train.jsonl", ("q", "gs://b/d/train.jsonl", None)),
        (
            "q=gs://b/d/train.jsonl:ambiguous, incomplete",
            ("q", "gs://b/d/train.jsonl", ("ambiguous", "incomplete")),
        ),
        ("t=gs://b/tfds_dir", ("t", "gs://b/tfds_dir", None)),
    ],
)
def test_source_specs_keep_a_urls_colon(text, expected):
    spec = SourceSpec.parse(text)
    assert (spec.name, spec.path, spec.types) == expected


def test_bad_source_specs_say_what_was_expected():
    with pytest.raises(InputError, match="expected name=path"):
        SourceSpec.parse("gs://b/train.jsonl")
    with pytest.raises(InputError, match=r"unknown row types \['orignal'\]"):
        SourceSpec.parse("c=gs://b/train.jsonl:orignal")
