"""The model card (README.md) of an exported model: what we know about how it was made.

From a training run (`clarify-jax train --out RUN`, exported whole or as RUN/checkpoints/STEP) the
card tells the base model, the training data (sources, their row counts per type where the files
are still readable, the mixture of each stage), the stages, the LoRA or full fine-tuning settings
and the losses per kind from RUN/metrics.jsonl. Summaries of `clarify-jax evaluate` add evaluation
tables in the layout of the HumanEvalComm leaderboard. For a plain source (an HF directory or a
`convert` output) the card says only what is known: the architecture and the evaluations.

Nothing here needs JAX: the card is built from JSON files alone.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from clarify_jax.checkpoints.load import metadata_dir
from clarify_jax.checkpoints.run_dir import AVERAGED_STEPS_KEY, RUN_CONFIG_FILE, find_run, read_step_meta
from clarify_jax.data.tfds_store import read_tfds
from clarify_jax.evaluate import report
from clarify_jax.prompts import ROW_TYPES
from clarify_jax.train.inputs import InputError, SourceSpec, parse_mixture
from clarify_jax.train.metrics_log import METRICS_FILE
from clarify_jax.util.markdown import markdown_table
from clarify_jax.util.storage import local_copy

PAPER = "https://arxiv.org/abs/2504.16331"
HUMANEVALCOMM = "https://github.com/jie-jw-wu/human-eval-comm"
BENCHMARK_NAMES = {"humaneval": "HumanEval", "mbpp": "MBPP"}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Directory names of the models the presets target -> their Hub repositories.
KNOWN_BASE_MODELS = {
    "deepseek-coder-6.7b-instruct": "deepseek-ai/deepseek-coder-6.7b-instruct",
    "deepseek-coder-6.7b-base": "deepseek-ai/deepseek-coder-6.7b-base",
    "codellama-7b-instruct": "codellama/CodeLlama-7b-Instruct-hf",
    "codellama-7b-instruct-hf": "codellama/CodeLlama-7b-Instruct-hf",
    "qwen2.5-coder-7b-instruct": "Qwen/Qwen2.5-Coder-7B-Instruct",
}


# ---------------------------------------------------------------------------------------------
# What the source tells


def infer_base_model(model_path: str | Path) -> str | None:
    """The Hub id of a local model directory, where it can be told: a Hub cache snapshot
    (models--org--name/snapshots/SHA), a config.json whose `_name_or_path` is a Hub id, or the
    directory name of a model the presets target."""
    path = Path(model_path)
    for part in path.parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return part[len("models--") :].replace("--", "/", 1)
    config = _read_json(path / "config.json") or {}
    name = config.get("_name_or_path")
    if isinstance(name, str) and REPO_ID.match(name) and not Path(name).exists():
        return name
    key = path.name.lower()
    return KNOWN_BASE_MODELS.get(key) or KNOWN_BASE_MODELS.get(key.removesuffix("-hf"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_metrics(path: Path, last_step: int | None = None) -> list[dict]:
    """metrics.jsonl records up to `last_step` (a line cut by a crash ends the file)."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(record, dict) and (last_step is None or record.get("step", 0) <= last_step):
            records.append(record)
    return records


def parse_source(text: str) -> tuple[str, str, tuple[str, ...] | None]:
    """(name, path, types) of a `--data.sources` entry, as training parses it."""
    spec = SourceSpec.parse(text)
    return spec.name, spec.path, spec.types


def describe_rows(path: str | Path, types: tuple[str, ...] | None) -> dict | None:
    """Rows per type, and the datasets and backends they were synthesized from, for a JSONL of
    synthesized rows or a TFDS directory from `synthesize` (local or gs://); None when unreadable."""
    try:
        path = local_copy(path)
        if path.is_dir():
            data = read_tfds(path, "train")
            rows = [data[i] for i in range(len(data))]
        else:
            with open(path, encoding="utf-8") as f:
                rows = [json.loads(line) for line in f if line.strip()]
    except Exception:  # noqa: BLE001 - a card is still useful without the counts
        return None
    rows = [r for r in rows if isinstance(r, dict) and (types is None or r.get("type") in types)]

    def text(value):
        return value.decode() if isinstance(value, bytes) else str(value)

    return {
        "rows": len(rows),
        "types": Counter(text(r.get("type", "?")) for r in rows),
        "datasets": sorted({text(r["source"]) for r in rows if r.get("source")}),
        "backends": sorted({text(r["backend"]) for r in rows if r.get("backend")}),
        "problems": len({text(r["problem_id"]) for r in rows if r.get("problem_id") is not None}),
    }


# ---------------------------------------------------------------------------------------------
# Markdown pieces


def _number(value: Any, digits: int = 4) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.{digits}g}"


def _mixture(text: str, names: list[str]) -> str:
    """`clear=1,clarify=4` -> `clear 20%, clarify 80%`; empty: all sources equally."""
    if not text.strip():
        return "all sources equally" if len(names) > 1 else (names[0] if names else "—")
    try:
        weights = parse_mixture(text, names)
    except InputError:
        return text
    total = sum(weights.values()) or 1.0
    return ", ".join(f"{name} {100 * w / total:.0f}%" for name, w in weights.items())


def _data_section(config: dict) -> list[str]:
    data = config.get("data") or {}
    specs = [parse_source(s) for s in data.get("sources") or ()]
    lines = ["## Training data", ""]
    if not specs:
        return lines + ["The run's configuration names no data sources.", ""]
    lines += [
        "Clarification-aware rows made by `clarify-jax synthesize`: each programming problem gives "
        "an *original* row (the answer is the reference solution) and *ambiguous*, *inconsistent* "
        "and *incomplete* rewrites whose answer is a set of clarifying questions. Problems were "
        "split into train and validation by problem, so no problem's variants cross the split.",
        "",
    ]
    body = []
    for name, path, types in specs:
        info = describe_rows(path, types)
        if info is None:
            rows, kinds, origin = "not readable at export", ", ".join(types or ("all",)), "—"
        else:
            rows = f"{info['rows']} ({info['problems']} problems)" if info["problems"] else str(info["rows"])
            order = {t: i for i, t in enumerate(ROW_TYPES)}
            kinds = ", ".join(
                f"{t} {n}"
                for t, n in sorted(info["types"].items(), key=lambda tn: (order.get(tn[0], 9), tn[0]))
            )
            origin = ", ".join(info["datasets"] or ["—"])
            if info["backends"]:
                origin += f" (backend: {', '.join(info['backends'])})"
        body.append([f"`{name}`", f"`{Path(path).name}`", kinds or "—", rows, origin])
    lines += [markdown_table(["Source", "File", "Rows per type", "Rows", "Synthesized from"], body), ""]
    validation = [parse_source(s) for s in data.get("validation") or ()]
    if validation:
        lines += [
            "Validation: "
            + ", ".join(f"`{n}` (`{Path(p).name}`)" for n, p, _ in validation)
            + ", read in full.",
            "",
        ]
    extras = []
    if "seq_len" in data:
        extras.append(f"packed rows of {data['seq_len']} tokens")
    if "batch_size" in data:
        extras.append(f"{data['batch_size']} rows per optimizer step")
    if data.get("round1_instruction"):
        extras.append("the HumanEvalComm round-1 instruction before each problem")
    if data.get("answer_prefix"):
        extras.append("the paper's fixed clear / clarify sentence opening each first answer")
    if extras:
        lines += ["Format: " + "; ".join(extras) + ".", ""]
    return lines


def _stages_section(config: dict) -> list[str]:
    stages = config.get("stages") or []
    names = [parse_source(s)[0] for s in (config.get("data") or {}).get("sources") or ()]
    body = [
        [
            str(i + 1),
            s.get("name") or "—",
            str(s.get("steps", "—")),
            _mixture(s.get("mixture", ""), names),
            _number(s.get("clarify_weight")),
            _number(s.get("code_weight")),
            _number(s.get("learning_rate")),
            str(s.get("warmup_steps", 0)),
        ]
        for i, s in enumerate(stages)
    ]
    lines = [
        "## Training stages",
        "",
        "The loss is a weighted sum of the mean cross-entropy on clarifying-question tokens and "
        "on code-answer tokens (prompt tokens carry no loss); each stage sets its own weights, "
        "data mixture and peak learning rate.",
        "",
        markdown_table(
            ["Stage", "Name", "Steps", "Mixture", "Clarify weight", "Code weight", "Peak LR", "Warmup"], body
        ),
        "",
    ]
    return lines


def _settings_section(config: dict, step: int | None, averaged: list | None = None) -> list[str]:
    lora, opt, data = config.get("lora") or {}, config.get("optimizer") or {}, config.get("data") or {}
    rank = lora.get("rank") or 0
    if rank:
        method = (
            f"LoRA, rank {rank}, alpha {_number(lora.get('alpha'))}, dropout "
            f"{_number(lora.get('dropout', 0.0))}, on {', '.join(lora.get('targets') or ())}. The "
            "adapters are merged into the base weights in this repository: it loads as a plain model."
        )
    else:
        method = "full fine-tuning (every parameter trained)."
    total = sum(int(s.get("steps", 0)) for s in config.get("stages") or [])
    rows = [
        ["Method", method],
        [
            "Optimizer",
            f"AdamW (b1 {_number(opt.get('b1'))}, b2 {_number(opt.get('b2'))}, weight decay "
            f"{_number(opt.get('weight_decay'))}, clip norm {_number(opt.get('clip_norm'))}), "
            f"{opt.get('schedule', '?')} decay to {_number(opt.get('final_lr_ratio'))} x peak "
            "after each stage's warmup",
        ],
        [
            "Batch",
            f"{data.get('batch_size', '?')} rows x {data.get('seq_len', '?')} tokens, "
            f"{config.get('grad_accum', 1)} micro-batch(es) per step",
        ],
        [
            "Precision",
            f"weights {config.get('param_dtype', '?')}, compute {config.get('compute_dtype', '?')}",
        ],
        ["Steps", f"{step} of {total}" if step is not None else str(total)],
    ]
    if averaged:
        rows.append(["Weights", f"the mean of the checkpoints of steps {', '.join(map(str, averaged))}"])
    return ["## Fine-tuning settings", "", markdown_table(["Setting", "Value"], rows), ""]


def _losses_section(records: list[dict]) -> list[str]:
    rows = []
    for split in ("train", "validation"):
        mine = [r for r in records if r.get("split") == split and ("loss/clarify" in r or "loss/code" in r)]
        picks = [("first", mine[0]), ("final", mine[-1])] if len(mine) > 1 else [("final", r) for r in mine]
        for label, r in picks:
            rows.append(
                [
                    f"{split}, {label}",
                    str(r.get("step", "—")),
                    _number(r.get("loss/clarify")),
                    _number(r.get("loss/code")),
                    _number(r.get("loss")),
                ]
            )
    if not rows:
        return []
    return [
        "## Training losses",
        "",
        "Mean cross-entropy per token kind (nats), from the run's `metrics.jsonl`; a train row is one "
        "logged batch, a validation row the whole validation set (or `eval_batches` of it).",
        "",
        markdown_table(["Split", "Step", "Clarify loss", "Code loss", "Weighted loss"], rows),
        "",
    ]


def _shift_headings(markdown: str, levels: int = 1) -> str:
    return "\n".join("#" * levels + line if line.startswith("#") else line for line in markdown.splitlines())


def _model_label(summary: dict, default: str) -> str:
    name = str(summary.get("model") or default)
    return Path(name).name if "/" in name and Path(name).exists() else name


def _evaluation_section(summaries: list[dict], model_name: str) -> list[str]:

    if not summaries:
        return []
    lines = ["## Evaluation", ""]
    by_benchmark: dict[str, list[dict]] = {}
    for summary in summaries:
        by_benchmark.setdefault(str(summary.get("benchmark", "?")), []).append(summary)
    for benchmark, group in by_benchmark.items():
        rows: dict[str, dict] = {}
        for summary in group:
            label = model_name if len(group) == 1 else _model_label(summary, model_name)
            while label in rows:
                label += "'"
            rows[label] = summary["metrics"]
        if benchmark == "humanevalcomm":
            lines.append(_shift_headings(report.comm_markdown(rows, published=True)))
            evaluators = sorted({str(s.get("evaluator")) for s in group if s.get("evaluator")})
            lines += [
                "",
                f"HumanEvalComm ([benchmark]({HUMANEVALCOMM})): each problem's description is "
                "modified to be ambiguous (1a), inconsistent (1c), incomplete (1p) or a mix; the model "
                "should ask instead of guessing. Comm. Rate is the share of first replies without "
                "code; Good Question Rate the share of items whose questions the evaluator model "
                "graded good; Pass@1 and Test Pass Rate score the final code after the evaluator "
                "answered. The HmEval columns are the unmodified prompts."
                + (f" Evaluator: {', '.join(f'`{e}`' for e in evaluators)}." if evaluators else "")
                + " Rows marked *(published)* are the benchmark's own leaderboard, measured with its "
                "evaluator, for reference.",
                "",
            ]
        else:
            title = BENCHMARK_NAMES.get(benchmark, benchmark)
            lines += [_shift_headings(report.pass_at_k_markdown(rows, title)), ""]
        for label, summary in zip(rows, group):
            if summary.get("complete") is False:
                lines += [
                    f"*{label}: partial run, {summary.get('done')} of {summary.get('items')} items.*",
                    "",
                ]
    return lines


# ---------------------------------------------------------------------------------------------
# The card


def load_eval_summary(path: str | Path) -> dict:
    """A `clarify-jax evaluate` OUT/summary.json, checked enough to be put in a card."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    summary = _read_json(path)
    if (
        not isinstance(summary, dict)
        or not isinstance(summary.get("metrics"), dict)
        or "benchmark" not in summary
    ):
        raise ValueError(
            f"{path}: not a summary.json of `clarify-jax evaluate` "
            "(expected an object with 'benchmark' and 'metrics')"
        )
    if summary["benchmark"] == "humanevalcomm" and "overall" not in summary["metrics"]:
        raise ValueError(f"{path}: HumanEvalComm metrics without 'overall'")
    return summary


def build_model_card(
    source: str | Path,
    model_dir: str | Path | None = None,
    *,
    repo_id: str | None = None,
    eval_summaries: list[dict] | tuple = (),
    base_model: str | None = None,
) -> str:
    """The README.md text for the model exported from `source` into `model_dir`."""
    from huggingface_hub import ModelCardData

    source = Path(source)
    run = find_run(source)
    meta = read_step_meta(run[1]) if run else {}
    config = meta.get("config") or (_read_json(run[0] / RUN_CONFIG_FILE) if run else None) or {}
    step = int(meta.get("step", run[1].name)) if run else None  # an average names its last step
    lora_rank = (meta.get("lora") or config.get("lora") or {}).get("rank") or 0
    if base_model is None and run:
        base_model = infer_base_model(meta.get("model") or config.get("model") or "")
    model_config = _read_json(Path(model_dir) / "config.json") if model_dir else None
    if model_config is None:
        model_config = _read_json(metadata_dir(source) / "config.json") or {}
    name = repo_id or (Path(model_dir).name if model_dir else source.name)

    tags = ["clarifycoder", "code", "clarification"] + (["lora"] if lora_rank else [])
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="text-generation", base_model=base_model, tags=tags
    )
    lines = ["---", card_data.to_yaml(), "---", "", f"# {name.split('/')[-1]}", ""]
    base_text = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else None
    if run:
        lines += [
            f"A code model fine-tuned to **ask clarifying questions** when a programming problem is "
            "ambiguous, inconsistent or incomplete, and to write the code directly when the problem is "
            f"clear, following ClarifyCoder (Wu et al., [arXiv 2504.16331]({PAPER})): "
            "clarification-aware data synthesis, then fine-tuning on it"
            + (f", starting from {base_text}." if base_text else ".")
            + " Trained with clarify_jax, a JAX/Flax reimplementation of the method.",
            "",
        ]
    else:
        lines += [
            "A causal language model exported to Hugging Face format by clarify_jax, a JAX/Flax "
            f"reimplementation of ClarifyCoder (Wu et al., [arXiv 2504.16331]({PAPER})), which "
            "fine-tunes code models to ask clarifying questions about unclear problems. The export "
            "was made from a model directory, not a training run, so this card does not describe "
            "any training." + (f" Base model: {base_text}." if base_text else ""),
            "",
        ]
    arch = model_config.get("architectures") or [model_config.get("model_type", "?")]
    facts = [f"architecture {arch[0]}"]
    for key, label in (
        ("num_hidden_layers", "layers"),
        ("hidden_size", "hidden size"),
        ("vocab_size", "vocabulary"),
        ("torch_dtype", "weights"),
    ):
        if key in model_config:
            facts.append(f"{label} {model_config[key]}")
    lines += [
        "Model: " + ", ".join(facts) + ".",
        "",
        "## How to use",
        "",
        "Give it a problem description; if the description leaves something open it replies with "
        "questions instead of code. Answer them in the next user turn and it writes the code.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
        f'model = AutoModelForCausalLM.from_pretrained("{name}", dtype="auto")',
        'problem = "Write a function that returns the extreme value of a list."',
        'messages = [{"role": "user", "content": problem}]',
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,",
        '                                       return_tensors="pt")',
        "print(tokenizer.decode(model.generate(inputs, max_new_tokens=256)[0][inputs.shape[1]:]))",
        "```",
        "",
    ]
    if run and config:
        lines += (
            _data_section(config)
            + _stages_section(config)
            + _settings_section(config, step, meta.get(AVERAGED_STEPS_KEY))
        )
        lines += _losses_section(read_metrics(run[0] / METRICS_FILE, step))
    lines += _evaluation_section(list(eval_summaries), name)
    lines += [
        "## Citation",
        "",
        "The method: Wu, Chaudhary, Abrahamyan, Khaku, Wei and Fard, *ClarifyCoder: "
        "Clarification-Aware Fine-Tuning for Programmatic Problem Solving*, "
        f"[arXiv:2504.16331]({PAPER}).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, source: str | Path, **kwargs) -> Path:
    path = Path(model_dir) / "README.md"
    path.write_text(build_model_card(source, model_dir, **kwargs), encoding="utf-8")
    return path
