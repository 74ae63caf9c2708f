"""Evaluation: sandboxed execution of generated code (benchmarks and metrics come later)."""
