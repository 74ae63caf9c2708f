"""Chat rendering: text and ids as transformers gives them, and the loss kind of every token."""

import numpy as np
import pytest
import transformers

from clarify_jax.data.render import (
    CLARIFY_PREFIX,
    CLEAR_PREFIX,
    KIND_CLARIFY,
    KIND_CODE,
    KIND_PROMPT,
    ROUND1_INSTRUCTION,
    RenderOptions,
    render_dialogue,
)
from clarify_jax.hf import Tokenizer
from clarify_jax.hf.chat_template import render_text
from tests.support import chat_templates, tokenizer_dirs

DIALOGUE = [
    {"role": "user", "content": "Write a function that sorts a list in some order."},
    {
        "role": "assistant",
        "kind": "clarify",
        "content": "1. Which order do you mean: ascending or descending?",
    },
    {"role": "user", "content": "Ascending.\n"},
    {"role": "assistant", "kind": "code", "content": "```python\ndef sort(xs):\n    return sorted(xs)\n```"},
]
# How each template closes an assistant turn: the closing is trained with the turn.
MODELS = {
    "deepseek": (
        chat_templates.DEEPSEEK_CODER_INSTRUCT,
        ["<｜begin▁of▁sentence｜>", "<|EOT|>"],
        "<｜begin▁of▁sentence｜>",
        "<|EOT|>",
        lambda content: content + "\n<|EOT|>",
    ),
    "codellama": (
        chat_templates.CODELLAMA_INSTRUCT,
        ["<s>", "</s>"],
        "<s>",
        "</s>",
        lambda content: content.strip() + " </s>",
    ),
    "qwen": (
        chat_templates.QWEN25_CODER_INSTRUCT,
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None,
        "<|im_end|>",
        lambda content: content + "<|im_end|>",
    ),
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
    assert text == theirs.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    expected_ids = theirs.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, return_dict=False
    )
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
    assert trained == [
        (KIND_CLARIFY, closing(DIALOGUE[1]["content"])),
        (KIND_CODE, closing(DIALOGUE[3]["content"])),
    ]
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
        DIALOGUE[1]["content"] + "</s>",
        DIALOGUE[3]["content"] + "</s>",
    ]


# The paper code's recipe (clarify-coder, fine-tuning/clarify_aware_fine_tuning_v2.py, tokenize_v4),
# typed out by hand: f"{QPROMPT} {problem}" + f"{APROMPT} {answer}", then tokenizer(text) with
# add_eos_token set, labels = input_ids.
V4_QPROMPT = (
    "You are an expert software developer who writes high quality code. With below information, "
    "please either generate Python3 code (Respond directly with code only with markdown), or ask "
    "clarifying questions:\n"
)
V4_CLEAR = (
    "This is a clear problem requiring no clarifications. Let's generate the required Python3 code "
    "directly in markdown."
)
V4_CLARIFY = (
    "I have a few clarifying questions. Please respond with the necessary details so I can assist further."
)


def test_paper_v4_rows_match_the_paper_code(model_dir):
    from clarify_jax.data.render import DialogueRenderer

    name, path = model_dir
    tokenizer = Tokenizer(path)
    renderer = DialogueRenderer(tokenizer, RenderOptions(format="paper-v4", round1_instruction=True))
    problem, questions = "def f(xs):\n    '''Sort xs somehow.'''\n", "1. Ascending or descending?"
    code = "```python\ndef f(xs):\n    return sorted(xs)\n```"
    clarify_row = {"type": "ambiguous", "problem": problem, "answer": questions, "dialogue": DIALOGUE}
    clear_row = {
        "type": "original",
        "problem": problem,
        "answer": code,
        "dialogue": [
            {"role": "user", "content": problem},
            {"role": "assistant", "kind": "code", "content": code},
        ],
    }
    for row, text, kind in [
        (clarify_row, V4_QPROMPT + " " + problem + V4_CLARIFY + " " + questions, KIND_CLARIFY),
        (clear_row, V4_QPROMPT + " " + problem + V4_CLEAR + " " + code, KIND_CODE),
        ({"dialogue": clear_row["dialogue"]}, V4_QPROMPT + " " + problem + V4_CLEAR + " " + code, KIND_CODE),
    ]:
        ids, kinds = renderer(row)
        expected = tokenizer.encode(text) + [tokenizer.eos_id]  # BOS where the tokenizer adds one
        assert ids.tolist() == expected and tokenizer.decode(ids[-1:]) == MODELS[name][3]
        assert (kinds == kind).all()  # no chat template, every token trained
        assert "<|im_start|>" not in tokenizer.decode(ids) and "### Instruction" not in tokenizer.decode(ids)


def test_paper_v4_preset_and_training_inputs(model_dir, tmp_path):
    import json

    from clarify_jax.train.config import DataConfig
    from clarify_jax.train.inputs import TrainInputs
    from clarify_jax.train.presets import load_presets

    description, preset = load_presets()["paper-lora-v4-exact"]
    stage = preset.stages[0]
    assert (preset.data.row_format, stage.warmup_steps, stage.steps, stage.learning_rate) == (
        "paper-v4",
        100,
        500,
        1e-5,
    )
    assert (preset.lora.rank, preset.lora.alpha, preset.data.batch_size, preset.optimizer.b2) == (
        16,
        16.0,
        16,
        0.999,
    )
    assert load_presets()["paper-lora"][1].data.row_format == "chat"  # ours stays the default elsewhere
    rows = tmp_path / "rows.jsonl"
    row = {
        "type": "original",
        "problem": "Sort xs.",
        "answer": "```python\nsorted(xs)\n```",
        "dialogue": DIALOGUE[:1] + DIALOGUE[3:],
    }
    rows.write_text(json.dumps(row) + "\n")
    config = DataConfig(sources=(f"all={rows}",), row_format="paper-v4")
    inputs = TrainInputs(config, Tokenizer(model_dir[1]), 0)
    ids, kinds = inputs.render(json.loads(rows.read_text()))
    assert (kinds == KIND_CODE).all() and V4_CLEAR + " ```python" in Tokenizer(model_dir[1]).decode(ids)
