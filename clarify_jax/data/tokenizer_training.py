"""Train a small sentencepiece BPE tokenizer (for the CPU demo's tiny model) and write it as an
HF tokenizer directory that our `Tokenizer` and transformers both load."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}


def corpus_texts(paths: Iterable[Path]) -> Iterator[str]:
    """Lines of text files, or every text field of synthesized rows (.jsonl: problem, answer and
    dialogue turns)."""
    for path in paths:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        yield from (t["content"] for t in row.get("dialogue", []))
                        yield from (row[k] for k in ("problem", "answer") if isinstance(row.get(k), str))
        else:
            yield path.read_text(encoding="utf-8")


def train_tokenizer(corpus: Iterable[Path], out_dir: Path, vocab_size: int = 8000) -> Path:
    """A byte-fallback BPE with identity normalization (code keeps its whitespace), digits split."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "corpus.txt"
        with open(text_file, "w", encoding="utf-8") as f:
            for text in corpus_texts(corpus):
                # sentencepiece trains on one sentence per line; newlines inside code are
                # still encoded at use, through the byte fallback.
                for line in text.splitlines():
                    if line.strip():
                        f.write(line + "\n")
        spm.SentencePieceTrainer.train(
            input=str(text_file),
            model_prefix=str(Path(tmp) / "tokenizer"),
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            split_digits=True,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            pad_piece="<pad>",
            minloglevel=2,
        )
        (out_dir / "tokenizer.model").write_bytes((Path(tmp) / "tokenizer.model").read_bytes())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": True,
        **SPECIAL_TOKENS,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2) + "\n")
    return out_dir
