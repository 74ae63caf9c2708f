"""Chat rendering: text and ids as transformers gives them, and the loss kind of every token."""

import numpy as np
import pytest
import transformers

from clarify_jax.data.render import (
    CLARIFY_PREFIX, CLEAR_PREFIX, KIND_CLARIFY, KIND_CODE, KIND_PROMPT, ROUND1_INSTRUCTION, RenderOptions,
    render_dialogue, render_text)
from clarify_jax.hf import Tokenizer
from tests import chat_templates, tokenizer_dirs

DIALOGUE = [
    {"role": "user", "content": "Write a function that sorts a list in some order."},
    {"role": "assistant", "kind": "clarify", "content": "1. Which order do you mean: ascending or descending?"},
    {"role": "user", "content": "Ascending.\n"},
    {"role": "assistant", "kind": "code",
     "content": "```python\ndef sort(xs):\n    return sorted(xs)\n```"},
]
# How each template closes an assistant turn: the closing is trained with the turn.
MODELS = {
    "deepseek": (chat_templates.DEEPSEEK_CODER_INSTRUCT, ["<｜begin▁of▁sentence｜>", "<|EOT|>"],
                 "<｜begin▁of▁sentence｜>", "<|EOT|>", lambda content: content + "\n<|EOT|>"),
    "codellama": (chat_templates.CODELLAMA_INSTRUCT, ["<s>", "</s>"], "<s>", "</s>",
                  lambda content: content.strip() + " </s>"),
    "qwen": (chat_templates.QWEN25_CODER_INSTRUCT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None,
             "<|im_end|>", lambda content: content + "<|im_end|>"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def model_dir(request, tmp_path_factory):
    template, specials, bos, eos, _ = MODELS[request.param]
    config = {"bos_token": bos, "eos_token": eos, "chat_template": template}
    path = tokenizer_dirs.byte_level_dir(tmp_path_factory.mktemp(request.param), specials, config)
    return request.param, path


@pytest.mark.parametrize("system", [False, True])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_text_and_ids_match_transformers(model_dir, system, generation_prompt):
    name, path = model_dir
    messages = [{"role": t["role"], "content": t["content"]} for t in DIALOGUE]
    if system:
        messages = [{"role": "system", "content": "You ask before you code."}] + messages
    if generation_prompt:
        messages = messages[:-1]
    ours, theirs = Tokenizer(path), transformers.AutoTokenizer.from_pretrained(path)
    text = render_text(messages, ours, add_generation_prompt=generation_prompt)
    assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    expected_ids = theirs.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                              return_dict=False)
    assert ours.encode_with_offsets(text)[0] == list(expected_ids)


def _runs(kinds):
    """Maximal runs of equal kind: (kind, start, end)."""
    runs, start = [], 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            runs.append((int(kinds[start]), start, i))
            start = i
    return runs


def test_every_token_has_the_kind_of_its_turn(model_dir):
    name, path = model_dir
    tokenizer = Tokenizer(path)
    ids, kinds = render_dialogue(DIALOGUE, tokenizer)
    assert ids.dtype == np.int32 and kinds.dtype == np.int8 and len(ids) == len(kinds)
    closing = MODELS[name][4]
    trained = [(kind, tokenizer.decode(ids[s:e])) for kind, s, e in _runs(kinds) if kind != KIND_PROMPT]
    assert trained == [(KIND_CLARIFY, closing(DIALOGUE[1]["content"])), (KIND_CODE, closing(DIALOGUE[3]["content"]))]
    # Everything else (headers, user turns, the system prompt) is prompt and decodes back in place.
    assert tokenizer.decode(ids) == render_text(DIALOGUE, tokenizer)


def test_paper_format_options(model_dir):
    _, path = model_dir
    tokenizer = Tokenizer(path)
    options = RenderOptions(round1_instruction=True, answer_prefix=True)
    ids, kinds = render_dialogue(DIALOGUE, tokenizer, options)
    text = tokenizer.decode(ids)
    assert ROUND1_INSTRUCTION + DIALOGUE[0]["content"] in text
    clarify_text = tokenizer.decode(ids[kinds == KIND_CLARIFY])
    assert clarify_text.lstrip().startswith(CLARIFY_PREFIX + DIALOGUE[1]["content"][:10])
    original = [{"role": "user", "content": "Sort a list ascending."}, DIALOGUE[3]]
    ids, kinds = render_dialogue(original, tokenizer, options)
    assert tokenizer.decode(ids[kinds == KIND_CODE]).lstrip().startswith(CLEAR_PREFIX + "```python")


def test_first_turn_only_keeps_the_first_exchange(model_dir):
    _, path = model_dir
    tokenizer = Tokenizer(path)
    ids, kinds = render_dialogue(DIALOGUE, tokenizer, RenderOptions(first_turn_only=True))
    assert tokenizer.decode(ids) == render_text(DIALOGUE[:2], tokenizer)
    assert KIND_CODE not in kinds and KIND_CLARIFY in kinds


def test_sentencepiece_tokenizer_and_builtin_format(tmp_path):
    path = tokenizer_dirs.sentencepiece_dir(tmp_path / "spm", {"bos_token": "<s>", "eos_token": "</s>"})
    tokenizer = Tokenizer(path)
    assert tokenizer.chat_template is None  # the built-in format is used
    ids, kinds = render_dialogue(DIALOGUE, tokenizer)
    assert ids[0] == tokenizer.bos_id and int((ids == tokenizer.eos_id).sum()) == 2
    assert [tokenizer.decode(ids[s:e]) for k, s, e in _runs(kinds) if k != KIND_PROMPT] == [
        DIALOGUE[1]["content"] + "</s>", DIALOGUE[3]["content"] + "</s>"]
