"""`clarify-jax tokenizer train`: a sentencepiece BPE that our Tokenizer and transformers load."""

import pytest
import transformers

from clarify_jax.data import sources
from clarify_jax.data.render import KIND_CODE, render_dialogue
from clarify_jax.hf import Tokenizer
from tests.support.cli import run_cli

CODE = (
    "def pairs(xs):\n    out = []\n    for i in range(len(xs) - 1):\n"
    "        out.append((xs[i], xs[i + 1]))\n    return out\n"
)


@pytest.mark.slow
def test_trained_tokenizer_round_trips_code_and_matches_transformers(shared_data, tmp_path):
    corpus = tmp_path / "mbpp.txt"
    corpus.write_text(
        "\n".join(
            p.prompt + "\n" + p.solutions[0]
            for p in sources.read_mbpp(shared_data / "mbpp" / "sanitized-mbpp.json")
        )
    )
    result = run_cli("tokenizer", "train", "--corpus", corpus, "--out", tmp_path / "tok", "--vocab-size", 512)
    assert result.returncode == 0, result.stderr
    ours = Tokenizer(tmp_path / "tok")
    assert ours.vocab_size == 512
    assert (ours.unk_token, ours.bos_id, ours.eos_id, ours.pad_id) == ("<unk>", 1, 2, 3)
    ids = ours.encode(CODE)
    assert ids[0] == 1 and ours.decode(ids, skip_special_tokens=True) == CODE
    assert len(ids) < 0.8 * len(CODE)  # it learned merges, not one token per character
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in (CODE, "Write a function to find the shared elements from the given two lists."):
        assert theirs.encode(text) == ours.encode(text)
    dialogue = [
        {"role": "user", "content": "Pair up neighbours."},
        {"role": "assistant", "kind": "code", "content": CODE},
    ]
    tokens, kinds = render_dialogue(dialogue, ours)
    assert ours.decode(tokens[kinds == KIND_CODE]) == CODE + "</s>"


@pytest.mark.slow
def test_missing_corpus_is_a_clear_error(tmp_path):
    result = run_cli("tokenizer", "train", "--corpus", tmp_path / "none.txt", "--out", tmp_path / "tok")
    assert result.returncode == 2
    assert result.stderr.strip() == f"clarify-jax: error: corpus files not found: {tmp_path / 'none.txt'}"
