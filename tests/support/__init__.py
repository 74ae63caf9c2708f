"""Helpers the tests share: tiny HF models, tokenizer folders, chat templates, HTTP servers,
training setups, the CLI in a process."""
