"""Our tokenizers give transformers' ids on tokenizer.json (byte-level BPE) and tokenizer.model
(sentencepiece) directories built here, and read special tokens and the chat template."""

import json

import pytest
import transformers

from clarify_jax.hf import Tokenizer, TokenizerError
from tests.support import tokenizer_dirs

TEXTS = [
    "def f(x):\n    return x * 2",
    "Hello world!",
    "naïve λ → ✓",
    "a  b\n\nc",
    "12345 + 678",
    "Ask before you code.",
]
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def byte_level_dir(tmp_path_factory):
    """Like deepseek-coder: byte-level BPE, a post-processor that prepends BOS, add_bos_token."""
    return tokenizer_dirs.byte_level_dir(
        tmp_path_factory.mktemp("bpe"),
        ["<s>", "</s>", "<pad>"],
        bos_in_post_processor=True,
        vocab_size=320,
        config={
            "bos_token": {"__type": "AddedToken", "content": "<s>"},
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "add_bos_token": True,
            "add_eos_token": False,
            "chat_template": TEMPLATE,
        },
    )


@pytest.fixture(scope="module")
def sentencepiece_dir(tmp_path_factory):
    """Like CodeLlama: a sentencepiece BPE model with byte fallback and identity normalization."""
    return tokenizer_dirs.sentencepiece_dir(
        tmp_path_factory.mktemp("spm"),
        {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "legacy": True},
    )


@pytest.mark.parametrize("fixture", ["byte_level_dir", "sentencepiece_dir"])
def test_ids_and_text_match_transformers(request, fixture):
    path = request.getfixturevalue(fixture)
    ours, theirs = Tokenizer(path), transformers.AutoTokenizer.from_pretrained(path)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == theirs.encode(text), text
        assert ids[0] == ours.bos_id == theirs.bos_token_id
        assert ours.encode(text, add_special_tokens=False) == theirs.encode(text, add_special_tokens=False)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.eos_id == theirs.eos_token_id


def test_special_tokens_and_chat_template(byte_level_dir):
    tok = Tokenizer(byte_level_dir)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert tok.chat_template == TEMPLATE
    assert tok.vocab_size == 320


def test_no_bos_when_the_config_says_so(byte_level_dir, tmp_path):
    # Qwen2-style: no BOS at all.
    (tmp_path / "tokenizer.json").write_text((byte_level_dir / "tokenizer.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "add_bos_token": False}))
    assert Tokenizer(tmp_path).encode("Hello world!") == Tokenizer(byte_level_dir).encode("Hello world!")[1:]


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.json or tokenizer.model"):
        Tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text('{\n  "bos_token": ,\n}')
    with pytest.raises(TokenizerError, match="tokenizer_config.json: line 2: invalid JSON"):
        Tokenizer(tmp_path)


@pytest.mark.parametrize("fixture", ["byte_level_dir", "sentencepiece_dir"])
def test_ids_past_the_vocabulary_are_dropped_when_decoding(request, fixture):
    # Models pad their embedding past the tokenizer (Qwen2.5) and a sampler can pick those rows.
    tokenizer = Tokenizer(request.getfixturevalue(fixture))
    ids = tokenizer.encode("def add(a, b):", add_special_tokens=False)
    padded = ids[:2] + [tokenizer.vocab_size, tokenizer.vocab_size + 7] + ids[2:]
    assert tokenizer.decode(padded) == tokenizer.decode(ids) == "def add(a, b):"
