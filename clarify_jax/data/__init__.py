"""Data: problem sources, clarification-aware synthesis, reference checks, TFDS storage, row
rendering (ids and a loss kind per token), tokenizer training and the Grain input pipeline."""
