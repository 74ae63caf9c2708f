"""`clarify-jax synthesize`: read a source, check references, synthesize, store."""

from __future__ import annotations

import itertools
import json

from clarify_jax.backends.spec import make_backend, parse_spec
from clarify_jax.data.problem import ReadReport
from clarify_jax.data.sources import download, read_source
from clarify_jax.data.synthesis import Prompts, run_synthesis
from clarify_jax.data.tfds_store import write_tfds

# The options that shape what each backend kind writes, recorded with the dataset.
WRITING_OPTIONS = {"openai": ("temperature", "max_tokens"), "rules": (),
                   "local": ("temperature", "max_tokens", "max_length", "dtype", "seed")}


def synthesize(cfg) -> None:
    spec = parse_spec(cfg.backend, what="--backend")  # a malformed spec fails before any work
    path = cfg.input
    if cfg.download:
        path = download(cfg.source, cfg.cache_dir)
    report = ReadReport()
    problems = list(itertools.islice(read_source(cfg.source, path, cfg.mapping, cfg.lenient, report,
                                                 mbpp_style=cfg.mbpp_style),
                                     cfg.limit))
    if report.skipped:
        print(f"skipped {report.skipped} malformed rows, e.g.:\n  " + "\n  ".join(report.errors[:5]))
    checks = None
    if cfg.check_references:
        from clarify_jax.data.reference_checks import check_references
        checks = check_references(problems, timeout_s=cfg.test_timeout_s)
    backend = make_backend(spec, what="--backend", temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                           api_key_env=cfg.api_key_env, concurrency=cfg.workers,
                           timeout_s=cfg.request_timeout_s, max_retries=cfg.max_retries,
                           batch_size=cfg.batch_size, mesh=cfg.mesh, dtype=cfg.dtype,
                           max_length=cfg.max_length, seed=cfg.seed)
    prompts = Prompts.load(cfg.prompts_dir)
    summary = run_synthesis(problems, backend, cfg.out, prompts=prompts, types=tuple(cfg.types),
                            reference_checks=checks, workers=cfg.workers, batch_size=cfg.batch_size,
                            validation_fraction=cfg.validation_fraction,
                            original_share=cfg.original_share, seed=cfg.seed)
    rows = {split: [json.loads(line) for line in open(cfg.out / f"{split}.jsonl", encoding="utf-8")]
            for split in ("train", "validation")}
    settings = {"source": cfg.source, "input": str(path), "mbpp_style": cfg.mbpp_style,
                "backend": backend.name,
                "backend_options": {k: getattr(cfg, k) for k in WRITING_OPTIONS[spec.kind]},
                "prompt_version": prompts.version, "types": list(cfg.types), "seed": cfg.seed,
                "validation_fraction": cfg.validation_fraction, "original_share": cfg.original_share,
                "check_references": cfg.check_references}
    dataset_dir = write_tfds(rows, cfg.out / "tfds", settings)
    print(json.dumps({**summary.to_json(), "tfds": str(dataset_dir)}, indent=2))
    if summary.failed:
        print(f"{summary.failed} rewrites failed in the backend; rerun the same command to retry them")
