"""Data: dataset sources, clarification-aware synthesis, storage (and later, chat rendering and
the Grain pipeline)."""
