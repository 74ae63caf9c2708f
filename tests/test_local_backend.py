"""The local backend renders chats with the model's template and returns transformers' greedy text;
the chat loop keeps the history, resets, quits and survives backend errors."""

import io
import json
import sys

import pytest
import torch
import transformers

from clarify_jax.backends import BackendError
from clarify_jax.backends.local import LocalBackend, LocalConfig
from clarify_jax.checkpoints.convert import hf_to_checkpoint
from clarify_jax.commands import chat
from clarify_jax.commands.chat import run_chat
from clarify_jax.data.render import ROUND1_INSTRUCTION
from clarify_jax.sample import Sampler, SamplingConfig
from tests.support import chat_templates, tokenizer_dirs
from tests.support.hf_models import TINY

MAX_NEW = 16
CONVERSATIONS = [
    [{"role": "user", "content": "Write a function that sorts a list."}],
    [
        {"role": "system", "content": "Ask before you code."},
        {"role": "user", "content": "Sort it."},
        {"role": "assistant", "content": "Which order do you mean? Ascending or descending?"},
        {"role": "user", "content": "Ascending."},
    ],
    [{"role": "user", "content": "def add(a, b):\n    return a + b\nWhat does it do?"}],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random llama with a byte-level tokenizer (vocab 320) and DeepSeek-Coder's chat template."""
    path = tmp_path_factory.mktemp("chat_model")
    tokenizer_dirs.byte_level_dir(
        path,
        ["<s>", "</s>", "<pad>"],
        vocab_size=320,
        config={
            "bos_token": "<s>",
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "chat_template": chat_templates.DEEPSEEK_CODER_INSTRUCT,
        },
    )
    # A wider init than the default 0.02, so that replies depend visibly on the conversation.
    config = transformers.LlamaConfig(
        **{**TINY, "vocab_size": 320, "bos_token_id": 0, "eos_token_id": 1, "initializer_range": 0.2}
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def expected(model_dir):
    """transformers' greedy reply to each conversation, through its own chat template and tokenizer."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    )
    replies = []
    for messages in CONVERSATIONS:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids])
        with torch.no_grad():
            out = reference.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=MAX_NEW
            )
        replies.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    assert len(set(replies)) == len(replies) and all(replies), replies
    return replies


@pytest.fixture(scope="module")
def backend(model_dir):
    return LocalBackend(model_dir, max_new_tokens=MAX_NEW, batch_size=2)


def test_complete_equals_transformers_with_the_chat_template(backend, model_dir, expected):
    assert backend.name == f"local:{model_dir}"
    assert backend.complete(CONVERSATIONS[0]) == expected[0]


def test_complete_many_batches_and_keeps_the_order(backend, expected):
    # Three conversations of different lengths, in batches of two after sorting by length.
    assert backend.complete_many(CONVERSATIONS) == expected
    assert backend.complete_many([]) == []


def test_converted_checkpoint_gives_the_same_text(model_dir, expected, tmp_path):
    checkpoint = hf_to_checkpoint(model_dir, tmp_path / "ckpt", dtype="float32", progress=False)
    local = LocalBackend(LocalConfig(model=str(checkpoint), max_new_tokens=MAX_NEW))
    assert local.complete(CONVERSATIONS[0]) == expected[0]


def test_a_conversation_too_long_for_the_cache_is_named(backend):
    model = backend.sampler
    small = Sampler(model.cfg, model.params, model.tokenizer, max_length=300)
    local = LocalBackend.from_sampler(small, SamplingConfig(max_new_tokens=MAX_NEW), name="small")
    expected_error = r"small: conversation 2 renders to \d+ tokens; with max_new_tokens=16"
    with pytest.raises(BackendError, match=expected_error):
        short = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        local.complete_many([short, short, [{"role": "user", "content": "naïve λ → ✓ " * 40}]])
    with pytest.raises(ValueError, match="needs a model path"):
        LocalBackend(LocalConfig())


def test_max_total_tokens_cuts_replies_by_round(backend):
    """Prompt plus reply capped per round (HumanEvalComm ran its open models with 512, then 1024):
    the cut reply is the uncut one's first tokens, at least one token."""
    sampler = backend.sampler
    full = LocalBackend.from_sampler(sampler, SamplingConfig(max_new_tokens=MAX_NEW), batch_size=2)
    uncut = full.sample_many(CONVERSATIONS)
    lengths = [len(full.prompt_ids(c)) for c in CONVERSATIONS]  # conversation 1 has two user turns
    capped = LocalBackend.from_sampler(
        sampler,
        SamplingConfig(max_new_tokens=MAX_NEW),
        batch_size=2,
        max_total_tokens=(lengths[0] + 5, lengths[1] + 3),
    )
    texts = capped.complete_many(CONVERSATIONS)
    budgets = [5, 3, max(1, min(MAX_NEW, lengths[0] + 5 - lengths[2]))]
    for text, samples, budget in zip(texts, uncut, budgets):
        assert text == sampler.decode(samples[0].tokens[:budget])
    assert [capped.reply_budget(c, n, MAX_NEW) for c, n in zip(CONVERSATIONS, lengths)] == budgets
    with pytest.raises(ValueError, match="max_total_tokens must be positive"):
        LocalBackend.from_sampler(sampler, max_total_tokens=(0,))


class RecordingBackend:
    """Replies with a numbered answer and records every history it was given."""

    name = "recording"

    def __init__(self, fail_on: str | None = None):
        self.calls, self.fail_on = [], fail_on

    def complete(self, messages):
        self.calls.append([dict(m) for m in messages])
        if self.fail_on and self.fail_on in messages[-1]["content"]:
            raise BackendError("context too long")
        return f"answer {len(self.calls)}"


def scripted(lines):
    feed = iter(lines)

    def read(prompt):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read


def test_chat_keeps_history_resets_and_quits():
    backend, printed = RecordingBackend(), []
    final = run_chat(
        backend,
        scripted(
            [
                "Sort a list.",
                "",
                "Ascending.",
                "/reset",
                '"""',
                "def f(x):",
                "    return x",
                '"""',
                "/oops",
                "/quit",
                "never read",
            ]
        ),
        printed.append,
        system="Be brief.",
        instruction="TASK: ",
    )
    system = {"role": "system", "content": "Be brief."}
    first = [system, {"role": "user", "content": "TASK: Sort a list."}]
    second = first + [{"role": "assistant", "content": "answer 1"}, {"role": "user", "content": "Ascending."}]
    third = [system, {"role": "user", "content": "TASK: def f(x):\n    return x"}]
    assert backend.calls == [first, second, third]
    assert final == third + [{"role": "assistant", "content": "answer 3"}]
    replies = [p for p in printed if p.startswith("model> ")]
    assert replies == ["model> answer 1", "model> answer 2", "model> answer 3"]
    assert "(new conversation)" in printed
    assert any(p.startswith("unknown command /oops") for p in printed)


def test_chat_ends_on_eof_and_drops_a_failed_turn():
    backend, printed = RecordingBackend(fail_on="huge"), []
    final = run_chat(backend, scripted(["huge problem", "small problem"]), printed.append)
    assert "error: context too long\n(/reset starts a new conversation)" in printed
    assert final == [
        {"role": "user", "content": "small problem"},
        {"role": "assistant", "content": "answer 2"},
    ]


def test_chat_with_the_local_model(backend, expected):
    printed = []
    history = run_chat(backend, scripted([CONVERSATIONS[0][0]["content"]]), printed.append)
    assert history[-1] == {"role": "assistant", "content": expected[0]}
    assert f"model> {expected[0]}" in printed


def test_chat_command_reads_the_terminal(model_dir, expected, monkeypatch, capsys):
    """The CLI entry on all 8 devices (mesh 1,-1,1), reading stdin until it ends."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(CONVERSATIONS[0][0]["content"] + "\n"))
    chat.run(chat.ChatConfig(model=str(model_dir), max_new_tokens=MAX_NEW))
    assert f"model> {expected[0]}" in capsys.readouterr().out


def test_round1_instruction_option(model_dir, monkeypatch, capsys):
    recorded = RecordingBackend()
    monkeypatch.setattr(chat, "LocalBackend", lambda config: recorded)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Sort a list.\n"))
    chat.run(chat.ChatConfig(model=str(model_dir), round1_instruction=True))
    assert recorded.calls == [[{"role": "user", "content": ROUND1_INSTRUCTION + "Sort a list."}]]


def test_synthesize_with_a_local_spec_batches_and_counts_every_row(
    model_dir, shared_data, tmp_path, monkeypatch
):
    """`synthesize --backend local:DIR`: each round of rewrites (then questions, answers) is one
    sampler call of batch_size // 3 problems' types, and every row attempted is counted once: kept,
    rejected by one filter, or failed. The random model's replies lack the tags, so they fail."""
    from clarify_jax.commands import synthesize

    calls, sample = [], Sampler.sample

    def counting(self, prompts, *args, **kwargs):
        calls.append(len(prompts))
        return sample(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Sampler, "sample", counting)
    synthesize.run(
        synthesize.SynthesizeConfig(
            source="mbpp",
            input=shared_data / "mbpp" / "sanitized-mbpp.json",
            out=tmp_path,
            limit=4,
            backend=f"local:{model_dir}",
            max_tokens=MAX_NEW,
            batch_size=6,
            max_length=4096,
            check_references=False,
        )
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    kept, rejected = sum(summary["rows"].values()), sum(summary["rejected"].values())
    assert summary["attempted"] == 16 == kept + rejected + summary["failed"]
    assert summary["rows"]["original"] == 4 and summary["failed"] == 0
    by_type = summary["rejected_by_type"]
    assert sum(n for by_filter in by_type.values() for n in by_filter.values()) == rejected
    assert calls.count(6) >= 2 and len(calls) <= 6 and max(calls) == 6  # 2 problems x 3 types a call
    rows = [
        json.loads(line)
        for name in ("train", "validation")
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()
    ]
    assert {row["backend"] for row in rows} == {f"local:{model_dir}"}
