"""Where a trained model chooses to ask or to code, without generating: for each HumanEvalComm
prompt, the margin log P(first token of the clarify prefix) - log P(first token of the clear
prefix) at the start of the reply (one teacher-forced forward per batch, a minute for 104 items on
2 cores, against about 20 for the evaluation).

A positive margin is the first step of a clarifying reply. It tracks the evaluation's
Communication Rate (the trained smollm2-135m-lora run: 53.8% / 70.3% unmodified / modified here,
53.85% / 73.63% evaluated) but is not it: greedy decoding compares every token, not these two.
Prints JSON: the rate of positive margins per category and per problem, each item's margin, and
the unmodified/modified gap at other thresholds (what a shifted prior would give).

    python scripts/decision_probe.py --model reproduce_out/run --data HUMANEVALCOMM.jsonl \
        --problems HumanEval/4 HumanEval/41 ...
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from clarify_jax.checkpoints.load import load_model, metadata_dir  # noqa: E402
from clarify_jax.data.render import CLARIFY_PREFIX, CLEAR_PREFIX, ROUND1_INSTRUCTION  # noqa: E402
from clarify_jax.data.sources import read_humanevalcomm  # noqa: E402
from clarify_jax.hf.chat_template import render_text  # noqa: E402
from clarify_jax.hf.tokenizer import Tokenizer  # noqa: E402
from clarify_jax.model.transformer import forward  # noqa: E402

BATCH = 8
LENGTH_BUCKET = 64  # pad prompts to a multiple of this, so few shapes compile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a converted model or a training run")
    parser.add_argument("--data", required=True, help="HumanEvalComm.jsonl")
    parser.add_argument("--problems", nargs="*", default=(), help="problem ids (default: all)")
    args = parser.parse_args()

    tokenizer = Tokenizer(metadata_dir(args.model))
    cfg, params = load_model(args.model)

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    items = []  # (problem, category, prompt ids, clarify token, clear token)
    for problem in read_humanevalcomm(args.data):
        if args.problems and problem.id not in args.problems:
            continue
        for category, text in [("original", problem.prompt), *sorted(problem.variants.items())]:
            turn = [{"role": "user", "content": ROUND1_INSTRUCTION + text}]
            prompt = render_text(turn, tokenizer, add_generation_prompt=True)
            prompt_ids = ids(prompt)
            # the reply's first token as the tokenizer splits prompt + reply
            clarify = ids(prompt + CLARIFY_PREFIX)[len(prompt_ids)]
            clear = ids(prompt + CLEAR_PREFIX)[len(prompt_ids)]
            items.append((problem.id, category, prompt_ids, clarify, clear))
    if not items:
        parser.error(f"no HumanEvalComm problem of {args.problems} in {args.data}")

    margins = []
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        width = -(-max(len(item[2]) for item in batch) // LENGTH_BUCKET) * LENGTH_BUCKET
        tokens = np.zeros((len(batch), width), np.int32)
        segments = np.zeros_like(tokens)
        for row, (_, _, prompt_ids, _, _) in enumerate(batch):
            tokens[row, : len(prompt_ids)] = prompt_ids
            segments[row, : len(prompt_ids)] = 1
        logp = np.asarray(jax.nn.log_softmax(forward(cfg, params, tokens, segment_ids=segments), -1))
        for row, (_, _, prompt_ids, clarify, clear) in enumerate(batch):
            last = logp[row, len(prompt_ids) - 1]
            margins.append(float(last[clarify] - last[clear]))

    def rate(values) -> float:
        return round(100 * float(np.mean(np.asarray(values) > 0)), 2)

    by_category, by_problem = {}, {}
    for (pid, category, *_), margin in zip(items, margins):
        by_category.setdefault(category, []).append(margin)
        by_problem.setdefault(pid, {})[category] = round(margin, 3)
    unmodified = np.asarray(by_category.get("original", []))
    modified = np.asarray([m for (_, c, *_), m in zip(items, margins) if c != "original"])
    thresholds = [round(t, 1) for t in np.arange(-2.0, 2.05, 0.1)]
    print(
        json.dumps(
            {
                "model": str(args.model),
                "ask_rate": {c: rate(v) for c, v in by_category.items()} | {"modified": rate(modified)},
                "gap_at_threshold": {
                    t: round(100 * (np.mean(modified > t) - np.mean(unmodified > t)), 2) for t in thresholds
                },
                "margins": by_problem,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
