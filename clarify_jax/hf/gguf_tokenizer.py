"""A `tokenizers` tokenizer (tokenizer.json) and tokenizer_config.json from a GGUF vocabulary.

A GGUF file carries no tokenizer.json: llama.cpp stores the tokens, merges, scores, token types
and special ids as metadata (`gguf_io.GGUFModel.tokenizer_metadata`). Two tokenizer models are
rebuilt here, the way transformers' GGUF loader rebuilds them: "gpt2" (byte-level BPE, text split
by the regexes llama.cpp names in `tokenizer.ggml.pre`) and "llama" (SentencePiece-style BPE with
byte fallback and the ▁ space marker; merges from the file, else from the token scores).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

log = logging.getLogger(__name__)

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # tokenizer.ggml.token_type

# Split regexes of llama.cpp's pre-tokenizer types (llama-vocab.cpp), applied before byte-level BPE.
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK_CODER = (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+")
_DIGITS = "digits"  # every digit on its own (llama.cpp's "\p{N}" step)
_GPT2 = "gpt2"  # GPT-2's regex (ByteLevel's built-in one)
# "default" (and a missing name) is GPT-2's regex, as transformers reads such files; llama.cpp's
# own default adds punctuation and digit splits that no tokenizer.json has.
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("llama-bpe", "llama3", "llama-v3", "smaug-bpe", "falcon3", "dbrx", "pixtral"), (_LLAMA3,)
    ),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "megrez"), (_QWEN2,)),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell"), (_DIGITS, _GPT2)),
    "deepseek-coder": _DEEPSEEK_CODER + (_DIGITS,),
    **dict.fromkeys(("gpt-2", "gpt2", "mpt", "olmo", "default"), (_GPT2,)),
}


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's spelling of the 256 bytes as printable characters (byte-level BPE vocabularies)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def generate_merges(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """Merges a SentencePiece BPE vocabulary implies: every split of a token into two tokens,
    best score first (transformers' `generate_merges`, so both build the same tokenizer)."""
    merges = []
    for token, score in scores.items():
        local = [
            (token[:i], token[i:], score)
            for i in range(1, len(token))
            if token[:i] in vocab and token[i:] in vocab
        ]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def _file_merges(meta: dict[str, Any]) -> list[tuple[str, str]] | None:
    if meta.get("merges") is None:
        return None
    merges = []
    for merge in meta["merges"]:
        left, sep, right = merge.partition(" ")
        if not sep:
            raise ValueError(f"tokenizer.ggml.merges: {merge!r} is not two tokens separated by a space")
        merges.append((left, right))
    return merges


def _byte_level(meta: dict[str, Any]) -> Tokenizer:
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    # Tokens are stored in GPT-2's byte spelling; a few files write some (special ones) in plain text.
    vocab = {
        token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode()): i
        for i, token in enumerate(meta["tokens"])
    }
    merges = _file_merges(meta)
    if merges is None:
        raise ValueError("tokenizer.ggml.merges is missing (a gpt2 tokenizer needs its merges)")
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    pre = meta.get("pre") or "default"
    splits = PRE_TOKENIZERS.get(pre)
    if splits is None:
        log.warning("tokenizer.ggml.pre %r is not known here; splitting text with GPT-2's regex", pre)
        splits = (_GPT2,)
    steps = []
    for split in splits:
        if split == _DIGITS:
            steps.append(pre_tokenizers.Digits(individual_digits=True))
        elif split != _GPT2:
            steps.append(pre_tokenizers.Split(Regex(split), behavior="isolated"))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=_GPT2 in splits))
    tokenizer.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(steps)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece(meta: dict[str, Any]) -> Tokenizer:
    tokens = meta["tokens"]
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = _file_merges(meta)
    if not merges:
        if not meta.get("scores"):
            raise ValueError("a llama tokenizer needs tokenizer.ggml.merges or tokenizer.ggml.scores")
        merges = generate_merges(vocab, dict(zip(tokens, meta["scores"])))
    unk = meta.get("unk_token_id")
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            fuse_unk=True,
            byte_fallback=True,
            unk_token=tokens[unk] if unk is not None else None,
        )
    )
    prefix = meta.get("add_space_prefix")
    prefix = True if prefix is None else bool(prefix)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if prefix else "never", split=False
    )
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(steps)
    return tokenizer


BUILDERS = {"gpt2": _byte_level, "llama": _sentencepiece}


def build_tokenizer(meta: dict[str, Any]) -> tuple[Tokenizer, dict[str, Any]]:
    """(tokenizer, tokenizer_config.json dict) for the vocabulary in `meta` (GGUF tokenizer keys)."""
    kind = meta.get("model")
    if kind not in BUILDERS:
        raise ValueError(f"tokenizer.ggml.model {kind!r} is not supported (supported: {', '.join(BUILDERS)})")
    tokens, types = meta["tokens"], meta.get("token_type") or [NORMAL] * len(meta["tokens"])
    tokenizer = BUILDERS[kind](meta)

    def token(key: str) -> str | None:
        i = meta.get(key)
        if i is None:
            return None
        if not 0 <= i < len(tokens):
            raise ValueError(f"tokenizer.ggml.{key} {i} is outside the vocabulary of {len(tokens)}")
        return tokens[i]

    specials = {name: token(f"{name}_id") for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    # Control tokens (<|im_start|>, <s>) match whole in text and are special; user-defined ones match
    # whole but are ordinary text. In a byte-level vocabulary a control token spelled outside the
    # byte alphabet is a mislabelled stray, left out as transformers leaves it out.
    alphabet = set(bytes_to_unicode().values()) if kind == "gpt2" else None
    control = [
        t for t, kind_ in zip(tokens, types) if kind_ == CONTROL and (alphabet is None or set(t) <= alphabet)
    ]
    named = [t for t in specials.values() if t is not None and t not in control]
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control + named])
    user = [t for t, kind_ in zip(tokens, types) if kind_ == USER_DEFINED]
    if user:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])

    add_bos = meta.get("add_bos_token")
    add_bos = (kind == "llama") if add_bos is None else bool(add_bos)  # llama.cpp's default
    add_eos = bool(meta.get("add_eos_token") or False)
    # tokenizer.json adds them as the config says, for readers that use it alone.
    first = [specials["bos_token"]] if add_bos and specials["bos_token"] else []
    last = [specials["eos_token"]] if add_eos and specials["eos_token"] else []
    if first or last:
        pair = [*first, "$A", *last, *(f"{t}:1" for t in first), "$B:1", *(f"{t}:1" for t in last)]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=" ".join([*first, "$A", *last]),
            pair=" ".join(pair),
            special_tokens=[(t, tokenizer.token_to_id(t)) for t in dict.fromkeys(first + last)],
        )
    config: dict[str, Any] = {
        # Load tokenizer.json as written: a model-specific class would rebuild its own splitting.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
    }
    if meta.get("chat_template"):
        config["chat_template"] = meta["chat_template"]
    return tokenizer, config
