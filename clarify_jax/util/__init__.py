"""Leaf helpers with no knowledge of models or runs: JSON lines, markdown tables, gs:// paths."""
