"""Evaluation: sandboxed execution of generated code, HumanEvalComm and HumanEval / MBPP runs and metrics."""
