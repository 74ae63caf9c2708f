"""Synthesis -> TFDS ArrayRecord -> Grain pipeline with the real renderer and tokenizer."""

import dataclasses
import json

import numpy as np

from clarify_jax.backends import RulesBackend
from clarify_jax.data import sources
from clarify_jax.data.pipeline import PipelineConfig, make_iterator
from clarify_jax.data.render import KIND_CLARIFY, KIND_CODE, DialogueRenderer
from clarify_jax.data.synthesis import run_synthesis
from clarify_jax.data.tfds_store import read_tfds, write_tfds
from clarify_jax.hf import Tokenizer
from clarify_jax.hf.chat_template import render_text
from tests.support import chat_templates, tokenizer_dirs


def test_synthesized_rows_flow_into_packed_batches(shared_data, tmp_path):
    problems = list(sources.read_mbpp(shared_data / "mbpp" / "sanitized-mbpp.json"))[:12]
    run_synthesis(problems, RulesBackend(), tmp_path / "synth", progress=False)
    rows = {
        split: [json.loads(line) for line in (tmp_path / "synth" / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "validation")
    }
    dataset = write_tfds(rows, tmp_path / "tfds", {"source": "mbpp"})
    tokenizer = Tokenizer(
        tokenizer_dirs.byte_level_dir(
            tmp_path / "tok",
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            {"eos_token": "<|im_end|>", "chat_template": chat_templates.QWEN25_CODER_INSTRUCT},
            vocab_size=2000,
        )
    )
    source = read_tfds(dataset, "train")
    config = PipelineConfig(batch_size=2, seq_len=2048, seed=0, num_epochs=1)
    batches = list(make_iterator([(source, 1.0)], DialogueRenderer(tokenizer), config))
    prefetched = list(
        make_iterator(
            [(source, 1.0)], DialogueRenderer(tokenizer), dataclasses.replace(config, prefetch_workers=2)
        )
    )
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(batches, prefetched) for k in a)
    assert len(prefetched) == len(batches)
    texts = {render_text(row["dialogue"], tokenizer) for row in rows["train"]}
    seen = []
    for batch in batches:
        for b in range(batch["tokens"].shape[0]):
            for segment in set(batch["segment_ids"][b].tolist()) - {0}:
                where = batch["segment_ids"][b] == segment
                seen.append(tokenizer.decode(batch["tokens"][b][where]))
    assert sorted(seen) == sorted(texts)  # every row once, whole, in its own segment
    kinds = np.concatenate([b["target_kinds"].ravel() for b in batches])
    assert {KIND_CLARIFY, KIND_CODE} <= set(kinds.tolist())
