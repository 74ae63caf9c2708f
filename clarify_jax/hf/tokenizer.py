"""Tokenizers of HF model directories: `tokenizer.json` (tokenizers) or `tokenizer.model`
(sentencepiece), with special tokens and the chat template from `tokenizer_config.json`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


class TokenizerError(ValueError):
    pass


def _token_text(value: Any) -> str | None:
    # tokenizer_config.json writes special tokens either as strings or as AddedToken dicts.
    if isinstance(value, dict):
        return value.get("content")
    return value


class Tokenizer:
    """encode / decode with the special-token conventions of the model's tokenizer_config.json."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        config_path = self.path / "tokenizer_config.json"
        self.config: dict[str, Any] = {}
        if config_path.exists():
            try:
                self.config = json.loads(config_path.read_text())
            except json.JSONDecodeError as e:
                raise TokenizerError(f"{config_path}: line {e.lineno}: invalid JSON: {e.msg}") from None
        special_map = self.path / "special_tokens_map.json"
        specials = json.loads(special_map.read_text()) if special_map.exists() else {}
        if (self.path / "tokenizer.json").exists():
            from tokenizers import Tokenizer as FastTokenizer

            self._fast = FastTokenizer.from_file(str(self.path / "tokenizer.json"))
            self._sp = None
        elif (self.path / "tokenizer.model").exists():
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=str(self.path / "tokenizer.model"))
            self._fast = None
        else:
            raise TokenizerError(f"{self.path}: no tokenizer.json or tokenizer.model")

        def special(name: str) -> str | None:
            return _token_text(self.config.get(name, specials.get(name)))

        self.bos_token, self.eos_token = special("bos_token"), special("eos_token")
        self.pad_token, self.unk_token = special("pad_token"), special("unk_token")
        if self._sp is not None:
            self.bos_token = self.bos_token or self._sp.id_to_piece(self._sp.bos_id())
            self.eos_token = self.eos_token or self._sp.id_to_piece(self._sp.eos_id())
        # None: let tokenizer.json's own post-processor decide, as transformers does.
        self.add_bos_token: bool | None = self.config.get(
            "add_bos_token", True if self._sp is not None else None
        )
        self.add_eos_token: bool = bool(self.config.get("add_eos_token", False))
        self.chat_template: str | None = self.config.get("chat_template")
        if self.chat_template is None and (self.path / "chat_template.jinja").exists():
            self.chat_template = (self.path / "chat_template.jinja").read_text()

    # ---- ids of special tokens ----
    def token_to_id(self, token: str | None) -> int | None:
        if token is None:
            return None
        if self._fast is not None:
            return self._fast.token_to_id(token)
        i = self._sp.piece_to_id(token)
        return None if i == self._sp.unk_id() and token != self._sp.id_to_piece(i) else i

    def id_to_token(self, i: int) -> str:
        return self._fast.id_to_token(i) if self._fast is not None else self._sp.id_to_piece(i)

    @property
    def bos_id(self) -> int | None:
        return self.token_to_id(self.bos_token)

    @property
    def eos_id(self) -> int | None:
        return self.token_to_id(self.eos_token)

    @property
    def pad_id(self) -> int | None:
        return self.token_to_id(self.pad_token)

    @property
    def vocab_size(self) -> int:
        return self._fast.get_vocab_size() if self._fast is not None else self._sp.get_piece_size()

    # ---- text ----
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._fast is not None and self.add_bos_token is None and not self.add_eos_token:
            return self._fast.encode(text, add_special_tokens=add_special_tokens).ids
        if self._fast is not None:
            ids = self._fast.encode(text, add_special_tokens=False).ids
        else:
            ids = self._sp.encode(text)
        if add_special_tokens:
            if self.add_bos_token and self.bos_id is not None:
                ids = [self.bos_id] + ids
            if self.add_eos_token and self.eos_id is not None:
                ids = ids + [self.eos_id]
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of `text` (special tokens written in it recognised, none added) and each token's
        (start, end) character span, for marking which tokens come from which part of a chat."""
        if self._fast is not None:
            encoding = self._fast.encode(text, add_special_tokens=False)
            return encoding.ids, encoding.offsets
        # sentencepiece knows no special tokens in text: match them first, encode the pieces between.
        specials = sorted(
            {t for t in (self.bos_token, self.eos_token, self.pad_token) if t}, key=len, reverse=True
        )
        pattern = re.compile("|".join(map(re.escape, specials))) if specials else None
        ids, offsets, start = [], [], 0
        matches = list(pattern.finditer(text)) if pattern else []
        for match in [*matches, None]:
            stop = match.start() if match else len(text)
            if stop > start:
                for piece in self._sp.encode(text[start:stop], return_type="proto").pieces:
                    ids.append(piece.id)
                    offsets.append((start + piece.begin, start + piece.end))
            if match:
                ids.append(self.token_to_id(match.group()))
                offsets.append(match.span())
                start = match.end()
        return ids, offsets

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of `ids`. Ids past the tokenizer's vocabulary are dropped: models pad their
        embedding beyond it (Qwen2.5: 152,064 rows for 151,665 tokens) and may sample there."""
        ids = [int(i) for i in ids]
        ids = [i for i in ids if 0 <= i < self.vocab_size]
        if self._fast is not None:
            return self._fast.decode(ids, skip_special_tokens=skip_special_tokens)
        if skip_special_tokens:
            return self._sp.decode([i for i in ids if not self._sp.is_control(i)])
        # sentencepiece drops control tokens when decoding; write them out as transformers does.
        text, run = [], []
        for i in ids + [None]:
            if i is None or self._sp.is_control(i):
                text.append(self._sp.decode(run))
                run = []
                if i is not None:
                    text.append(self._sp.id_to_piece(i))
            else:
                run.append(i)
        return "".join(text)


def load_tokenizer(path: str | Path) -> Tokenizer:
    return Tokenizer(path)
