"""Evaluation: HumanEvalComm (our protocol and the benchmark's, with its harness), HumanEval / MBPP,
the resumable runner, metrics, reports, before/after comparisons and rescoring published logs."""
