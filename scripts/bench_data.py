"""Input-pipeline throughput on this CPU with a real (tiny, byte-level BPE) tokenizer.

Generates synthetic dialogue rows, trains the tokenizer on part of their text, and times
`build_pipeline` (render, pack, batch) with 0 and N prefetch workers. Prints JSON, including
the ratio to the tokens/s a 7B model consumes when training on one TPU v5p host.

    .venv/bin/python scripts/bench_data.py [--rows 20000 --seq-len 2048 --batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # workers are separate processes
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from clarify_jax.data.pipeline import PipelineConfig, build_pipeline  # noqa: E402
from clarify_jax.data.render import DialogueRenderer  # noqa: E402
from clarify_jax.hf import Tokenizer  # noqa: E402

# 6 * params FLOPs per trained token; 40% MFU on one v5p host (4 chips x 459 TFLOP/s bf16).
PARAMS_7B = 6.74e9
V5P_HOST_FLOPS = 4 * 459e12
MFU = 0.4
TOKENS_PER_S_7B_V5P_HOST = MFU * V5P_HOST_FLOPS / (6 * PARAMS_7B)


def synthetic_rows(count: int, problem_words: int, code_lines: int, seed: int) -> list[dict]:
    """Rows in the synthesis format: half original (code answer), half with a clarifying
    question, its answer and then the code."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(3000)])
    rows = []
    for i in range(count):
        # One draw of word indices per row: per-word numpy calls would dominate the run.
        w = words[rng.integers(0, len(words), problem_words + 4 * code_lines + 33)]
        problem = " ".join(w[:problem_words]) + "."
        c = w[problem_words:]
        code = "\n".join(
            f"    {c[4 * j]}_{j} = {c[4 * j + 1]}({c[4 * j + 2]}, {j * 7 % 100}) + {c[4 * j + 3]}[{j}]"
            for j in range(code_lines)
        )
        code = f"def {w[-1]}(x):\n{code}\n    return x"
        question, answer = " ".join(w[-33:-21]), " ".join(w[-21:-1])
        if i % 2 == 0:
            kind, dialogue = (
                "original",
                [
                    {"role": "user", "content": problem},
                    {"role": "assistant", "kind": "code", "content": code},
                ],
            )
        else:
            kind, dialogue = (
                "ambiguous",
                [
                    {"role": "user", "content": problem},
                    {"role": "assistant", "kind": "clarify", "content": "Should " + question + "?"},
                    {"role": "user", "content": answer + "."},
                    {"role": "assistant", "kind": "code", "content": code},
                ],
            )
        rows.append(
            {
                "id": f"row-{i}",
                "problem_id": f"p{i}",
                "type": kind,
                "problem": problem,
                "answer": code,
                "dialogue": dialogue,
            }
        )
    return rows


def train_tokenizer(rows: list[dict], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator((t["content"] for r in rows for t in r["dialogue"]), trainer)
    return tokenizer


CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}"
)


def our_renderer(tokenizer, directory: Path) -> DialogueRenderer:
    """The project's renderer (chat template, per-token kinds) over the trained tokenizer."""
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"eos_token": "<|im_end|>", "chat_template": CHATML_TEMPLATE})
    )
    return DialogueRenderer(Tokenizer(directory))


def time_pipeline(rows, render, config: PipelineConfig, warmup: int, batches: int, passes: int):
    iterator = iter(build_pipeline([(rows, 1.0)], render, config))
    for _ in range(warmup):  # includes worker start-up and the first packed group
        next(iterator)
    rates = []
    for _ in range(passes):
        start, examples, tokens = time.perf_counter(), 0, 0
        for _ in range(batches):
            batch = next(iterator)
            segments = batch["segment_ids"]
            tokens += int((segments > 0).sum())
            examples += int((batch["positions"] == 0)[segments > 0].sum())
        seconds = time.perf_counter() - start
        rates.append((examples / seconds, tokens / seconds, seconds))
    iterator.close()
    examples_s, tokens_s, seconds = (statistics.median(r[i] for r in rates) for i in range(3))
    return {
        "prefetch_workers": config.prefetch_workers,
        "examples_per_s": round(examples_s, 1),
        "tokens_per_s": round(tokens_s),
        "seconds_per_pass": round(seconds, 3),
        "batches_per_pass": batches,
        "passes": passes,
        "ratio_to_7b_v5p_host": round(tokens_s / TOKENS_PER_S_7B_V5P_HOST, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--problem-words", type=int, default=300)
    parser.add_argument("--code-lines", type=int, default=30)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument(
        "--tokenizer-rows", type=int, default=2000, help="rows whose text trains the tokenizer"
    )
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batches", type=int, default=10, help="batches per timed pass")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    rows = synthetic_rows(args.rows, args.problem_words, args.code_lines, seed=0)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = train_tokenizer(rows[: args.tokenizer_rows], args.vocab_size)
    train_s = time.perf_counter() - start
    workdir = Path(tempfile.mkdtemp())
    render = our_renderer(tokenizer, workdir)
    lengths = [len(render(r)[0]) for r in rows[:200]]

    results = []
    for workers in args.workers:
        config = PipelineConfig(
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            seed=0,
            num_epochs=None,
            prefetch_workers=workers,
        )
        results.append(time_pipeline(rows, render, config, args.warmup, args.batches, args.passes))

    print(
        json.dumps(
            {
                "device": "cpu",
                "cpu_count": os.cpu_count(),
                "rows": args.rows,
                "seq_len": args.seq_len,
                "global_batch": args.batch_size,
                "tokenizer": {
                    "kind": "byte-level BPE",
                    "vocab_size": tokenizer.get_vocab_size(),
                    "trained_on_rows": args.tokenizer_rows,
                    "train_s": round(train_s, 1),
                },
                "generate_rows_s": round(generate_s, 1),
                "mean_tokens_per_example": round(float(np.mean(lengths)), 1),
                "reference": {
                    "what": "7B model (6.74e9 params) training at 40% MFU on one TPU v5p host "
                    "(4 chips x 459 TFLOP/s bf16): 0.4*4*459e12/(6*6.74e9) tokens/s",
                    "tokens_per_s": round(TOKENS_PER_S_7B_V5P_HOST),
                },
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
