"""GGUF files in `clarify-jax convert`: tiny random llama and qwen2 models written here as llama.cpp
writes them (its tensor names, q/k row permutation, quantized blocks, vocabulary keys), converted,
then compared with transformers' own loading of the same file."""

import io
import json

import gguf
import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers
from gguf import GGMLQuantizationType as QType
from tokenizers import Tokenizer as FastTokenizer
from tokenizers import models, pre_tokenizers, trainers

from clarify_jax import model
from clarify_jax.checkpoints.convert import export_to_hf, hf_to_checkpoint
from clarify_jax.checkpoints.load import load_model
from clarify_jax.hf import CheckpointError, Tokenizer, load_pretrained
from clarify_jax.hf.chat_template import render_text
from clarify_jax.hf.gguf_io import GGUFModel
from clarify_jax.hf.gguf_tokenizer import build_tokenizer, bytes_to_unicode
from clarify_jax.model import ConfigError, ModelConfig
from tests.support.chat_templates import QWEN25_CODER_INSTRUCT
from tests.support.cli import run_cli
from tests.support.hf_models import build_tiny_model

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
CODE = '''def fizz_buzz(n: int) -> list[str]:
    """Return FizzBuzz for 1..n; e.g. fizz_buzz(15)[-1] == 'FizzBuzz'."""
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        else:
            out.append(str(i))  # 12345 and 0x1F too
    return out


class Stack:
    def __init__(self):
        self.items = []

    def push(self, x):
        self.items.append(x)
'''
PROSE = (
    "Write a function that returns the sum of the squares of the odd numbers in a list. "
    "It's ambiguous: should negative numbers count? I'd ask first, then write the code.\n"
)
TEXTS = [
    CODE,
    PROSE,
    "  leading spaces\tand tabs\n\n\nnaïve café — 北京 😀 <tool_call>x</tool_call>",
    "x=1;y=22;z=333;w=4444",
    "'s 've 'LL Don't STOP",
    "Done.</s><s>Next<|im_end|> after",
]
MESSAGES = [
    {"role": "system", "content": "You are a careful coding assistant."},
    {"role": "user", "content": PROSE + CODE},
    {"role": "assistant", "content": "Should negative numbers count?"},
    {"role": "user", "content": "Yes, they count."},
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
TOKENS = np.random.default_rng(5).integers(0, 256, (2, 11)).astype(np.int32)

# transformers name -> llama.cpp name, written out here (not taken from the code under test).
GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
# The mixed file: one block format per projection.
MIXED_TYPES = {
    "q_proj": QType.Q8_0,
    "k_proj": QType.Q4_0,
    "v_proj": QType.Q4_1,
    "o_proj": QType.Q5_0,
    "gate_proj": QType.Q5_1,
    "up_proj": QType.BF16,
    "down_proj": QType.Q8_0,
    "embed_tokens": QType.Q8_0,
    "lm_head": QType.F16,
}


def gguf_name(hf: str) -> str:
    if hf in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf]
    _, _, layer, rest = hf.split(".", 3)
    return f"blk.{layer}.{LAYER_NAMES[rest]}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, applied to q and k of llama models."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---- vocabularies, as llama.cpp stores them ----


def byte_level_vocab(pre: str) -> dict:
    """A byte-level BPE trained on a little code (merges included), with ChatML specials."""
    tok = FastTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([CODE, PROSE] * 20, trainer)
    saved = json.loads(tok.to_str())["model"]
    tokens = sorted(saved["vocab"], key=saved["vocab"].get)
    types = [
        USER_DEFINED if t.startswith(("<tool", "</tool")) else CONTROL if t in SPECIALS else NORMAL
        for t in tokens
    ]
    merges = [m if isinstance(m, str) else " ".join(m) for m in saved["merges"]]
    return dict(model="gpt2", pre=pre, tokens=tokens, types=types, merges=merges, scores=None)


def sentencepiece_vocab() -> dict:
    """A SentencePiece BPE with byte fallback: pieces, scores and types, no merges (as llama.cpp
    writes a tokenizer.model vocabulary)."""
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((CODE + PROSE).splitlines() * 20),
        model_writer=model_file,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model_file.getvalue())
    n = sp.get_piece_size()
    types = [
        UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i) else NORMAL
        for i in range(n)
    ]
    return dict(
        model="llama",
        pre=None,
        tokens=[sp.id_to_piece(i) for i in range(n)],
        types=types,
        merges=None,
        scores=[sp.get_score(i) for i in range(n)],
    )


# ---- GGUF files ----


def write_gguf(
    path,
    hf_model,
    arch: str,
    vocab: dict,
    qtype_of,
    *,
    bos: int,
    eos: int,
    pad=None,
    add_bos: bool,
    chat_template: str | None = None,
    rope_linear: float | None = None,
):
    c = hf_model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    if arch == "llama":
        w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
        w.add_vocab_size(c.vocab_size)
    if rope_linear:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope_linear)
    w.add_tokenizer_model(vocab["model"])
    if vocab["pre"]:
        w.add_tokenizer_pre(vocab["pre"])
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    if vocab["merges"]:
        w.add_token_merges(vocab["merges"])
    if vocab["scores"]:
        w.add_token_scores(vocab["scores"])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    if pad is not None:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(add_bos)
    if chat_template:
        w.add_chat_template(chat_template)
    for name, tensor in hf_model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        data = tensor.numpy().astype(np.float32)
        if arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            data = permute(data, c.num_attention_heads if ".q_proj." in name else c.num_key_value_heads)
        qtype = QType.F32 if data.ndim == 1 else qtype_of(name)
        if qtype == QType.F32:
            w.add_tensor(gguf_name(name), data)
        elif qtype == QType.F16:
            w.add_tensor(gguf_name(name), data.astype(np.float16))
        elif qtype == QType.Q8_1:  # a block format gguf-py cannot (de)quantize: zero bytes will do
            blocks = np.zeros(gguf.quants.quant_shape_to_byte_shape(data.shape, qtype), np.uint8)
            w.add_tensor(gguf_name(name), blocks, raw_dtype=qtype)
        else:
            w.add_tensor(gguf_name(name), gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def mixed_type(name: str) -> QType:
    return next(t for part, t in MIXED_TYPES.items() if f"{part}." in name)


CASES = {
    # name: (transformers variant, GGUF architecture, vocabulary, tensor types, special ids and flags)
    "llama_f32": (
        "llama",
        "llama",
        lambda: byte_level_vocab("llama-bpe"),
        lambda name: QType.F32,
        dict(bos=0, eos=2, add_bos=True, chat_template=CHATML),
    ),
    "qwen2_f16_tied": (
        "qwen2_tied",
        "qwen2",
        lambda: byte_level_vocab("qwen2"),
        lambda name: QType.F16,
        dict(bos=0, eos=2, pad=0, add_bos=False, chat_template=QWEN25_CODER_INSTRUCT),
    ),
    "llama_mixed_spm": (
        "llama",
        "llama",
        sentencepiece_vocab,
        mixed_type,
        dict(bos=1, eos=2, add_bos=True, chat_template=CHATML),
    ),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Case -> (directory holding model.gguf, the transformers model it was written from)."""
    built = {}

    def get(case: str):
        if case not in built:
            variant, arch, vocab_fn, qtype_of, ids = CASES[case]
            vocab = vocab_fn()
            hf_model = build_tiny_model(variant, vocab_size=len(vocab["tokens"]))
            folder = tmp_path_factory.mktemp(case)
            write_gguf(folder / "model.gguf", hf_model, arch, vocab, qtype_of, **ids)
            built[case] = folder, hf_model
        return built[case]

    return get


@pytest.fixture(scope="module")
def converted(files, tmp_path_factory):
    done = {}

    def get(case: str):
        if case not in done:
            folder, _ = files(case)
            done[case] = hf_to_checkpoint(
                folder / "model.gguf",
                tmp_path_factory.mktemp(case + "_ckpt"),
                dtype="float32",
                progress=False,
            )
        return done[case]

    return get


def transformers_model(folder):
    return transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file="model.gguf", dtype=torch.float32, attn_implementation="eager"
    ).eval()


def logits_of(torch_model, tokens=TOKENS):
    with torch.no_grad():
        return torch_model(torch.as_tensor(tokens)).logits.numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_logits_equal_transformers_loading_the_same_file(files, converted, case):
    folder, hf_model = files(case)
    cfg, params = load_model(converted(case))
    expected = ModelConfig.from_hf_dict(hf_model.config.to_dict())
    keep = dict(
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        pad_token_id=cfg.pad_token_id,
        max_position_embeddings=cfg.max_position_embeddings,
    )
    assert cfg == expected.replace(**keep)
    ours = np.asarray(model.forward(cfg, params, TOKENS))
    diff = np.abs(ours - logits_of(transformers_model(folder))).max()
    print(f"{case}: max |logit diff| vs transformers' GGUF loading = {diff:.2e}")
    assert diff <= 1e-4
    if case == "llama_f32":  # lossless file: also equal to the model it was written from
        assert np.abs(ours - logits_of(hf_model)).max() <= 1e-4


def test_dequantized_weights_equal_gguf_and_transformers_exactly(files, converted):
    folder, _ = files("llama_mixed_spm")
    cfg, params = load_model(converted("llama_mixed_spm"))
    reader = gguf.GGUFReader(folder / "model.gguf")
    raw = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}
    assert {t.tensor_type for t in reader.tensors} == set(MIXED_TYPES.values()) | {QType.F32}
    theirs = transformers_model(folder).state_dict()
    layers = params["layers"]
    for i in range(2):
        attn, mlp = layers["self_attn"], layers["mlp"]
        ours = {  # our kernels back in transformers' [out, in] layout
            "self_attn.q_proj.weight": attn["q_proj"]["kernel"][i].reshape(cfg.hidden_size, -1).T,
            "self_attn.k_proj.weight": attn["k_proj"]["kernel"][i].reshape(cfg.hidden_size, -1).T,
            "self_attn.v_proj.weight": attn["v_proj"]["kernel"][i].reshape(cfg.hidden_size, -1).T,
            "self_attn.o_proj.weight": attn["o_proj"]["kernel"][i].reshape(-1, cfg.hidden_size).T,
            **{f"mlp.{p}.weight": mlp[p]["kernel"][i].T for p in ("gate_proj", "up_proj", "down_proj")},
        }
        for name, weight in ours.items():
            weight = np.asarray(weight)
            hf = f"model.layers.{i}.{name}"
            stored = raw[gguf_name(hf)]
            if "q_proj" in name or "k_proj" in name:  # the file holds them permuted
                weight_in_file = permute(weight, cfg.num_heads if "q_proj" in name else cfg.num_kv_heads)
            else:
                weight_in_file = weight
            assert np.array_equal(weight_in_file, stored), hf
            assert np.array_equal(weight, theirs[hf].numpy()), hf
    embed = np.asarray(params["embed_tokens"]["embedding"])
    assert np.array_equal(embed, raw["token_embd.weight"])
    assert np.array_equal(np.asarray(params["lm_head"]["kernel"]).T, raw["output.weight"])


@pytest.mark.parametrize("case", list(CASES))
def test_tokenizer_equals_transformers_on_code_and_chat(files, converted, case):
    folder, _ = files(case)
    ours = Tokenizer(converted(case))
    theirs = transformers.AutoTokenizer.from_pretrained(folder, gguf_file="model.gguf")
    chat = render_text(MESSAGES, ours, add_generation_prompt=True)
    assert chat == theirs.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    for text in [*TEXTS, chat]:
        for special in (True, False):
            ids = ours.encode(text, add_special_tokens=special)
            assert ids == theirs(text, add_special_tokens=special)["input_ids"], (text, special)
        assert ours.decode(ids) == theirs.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert (ours.bos_token, ours.eos_token, ours.pad_token) == (
        theirs.bos_token,
        theirs.eos_token,
        theirs.pad_token,
    )
    generation = json.loads((converted(case) / "generation_config.json").read_text())
    assert generation["eos_token_id"] == ours.eos_id


def test_export_loads_in_transformers(converted, tmp_path):
    source = converted("llama_mixed_spm")
    out = export_to_hf(source, tmp_path / "hf", progress=False)
    cfg, params = load_model(source)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32, attn_implementation="eager"
    )
    assert np.abs(logits_of(reloaded) - np.asarray(model.forward(cfg, params, TOKENS))).max() <= 1e-4
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    ours = Tokenizer(source)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text)["input_ids"]


def test_linear_rope_scaling_and_loading_a_gguf_file_directly(tmp_path):
    vocab = byte_level_vocab("llama-bpe")
    hf_model = build_tiny_model("llama_linear", vocab_size=len(vocab["tokens"]))
    path = write_gguf(
        tmp_path / "linear.gguf",
        hf_model,
        "llama",
        vocab,
        lambda name: QType.F32,
        bos=0,
        eos=2,
        add_bos=False,
        rope_linear=4.0,
    )
    assert GGUFModel(path).hf_config()["rope_scaling"] == {"type": "linear", "factor": 4.0}
    cfg, params = load_pretrained(path)  # a GGUF file loads wherever an HF directory does
    assert cfg.rope_scaling.type == "linear" and cfg.rope_scaling.factor == 4.0
    assert np.abs(np.asarray(model.forward(cfg, params, TOKENS)) - logits_of(hf_model)).max() <= 1e-4


@pytest.mark.parametrize(
    "pre, text, pieces",
    [
        # llama.cpp's regex lists (llama-vocab.cpp), in GPT-2's byte spelling (Ġ space, Ċ newline)
        ("llama-bpe", "x = 12345;\n", ["x", "Ġ=", "Ġ", "123", "45", ";Ċ"]),
        ("qwen2", "x = 123;", ["x", "Ġ=", "Ġ", "1", "2", "3", ";"]),
        ("smollm", "a\n  12 ab", ["a", "ĊĠĠ", "1", "2", "Ġab"]),  # digits split off first
        ("deepseek-coder", "x = 12;\n", ["x", "Ġ=Ġ", "1", "2", ";", "Ċ"]),
        ("default", "a\n  12 ab", ["a", "ĊĠ", "Ġ12", "Ġab"]),  # GPT-2's regex, as transformers reads it
    ],
)
def test_byte_level_pre_tokenizers_split_as_llama_cpp(pre, text, pieces):
    alphabet = list(bytes_to_unicode().values())
    tokenizer, _ = build_tokenizer(dict(model="gpt2", pre=pre, tokens=alphabet, merges=[]))
    assert [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)] == pieces


# ---- bad files: one error naming the file and what is wrong ----


def test_truncated_file(files, tmp_path):
    folder, _ = files("llama_f32")
    data = (folder / "model.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:-1000])
    with pytest.raises(
        CheckpointError,
        match=rf"{cut}: truncated: tensor 'output\.weight' needs bytes up to "
        rf"\d+, the file has {len(data) - 1000}",
    ):
        GGUFModel(cut)
    cut.write_bytes(data[:200])
    with pytest.raises(CheckpointError, match=f"{cut}: not a readable GGUF file, or truncated in its header"):
        GGUFModel(cut)
    result = run_cli("convert", "--model", cut, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.startswith(f"clarify-jax: error: {cut}: not a readable GGUF file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unsupported_architecture(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "phi.gguf"), "phi3")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(
        ConfigError,
        match=rf"{tmp_path / 'phi.gguf'}: general.architecture is 'phi3'; "
        "supported: llama, qwen2",
    ):
        hf_to_checkpoint(tmp_path / "phi.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_quantization_type(tmp_path):
    vocab = byte_level_vocab("llama-bpe")
    hf_model = build_tiny_model("llama", vocab_size=len(vocab["tokens"]))
    v_proj = "model.layers.0.self_attn.v_proj.weight"
    path = write_gguf(
        tmp_path / "q8_1.gguf",
        hf_model,
        "llama",
        vocab,
        lambda name: QType.Q8_1 if name == v_proj else QType.F32,
        bos=0,
        eos=2,
        add_bos=False,
    )
    with pytest.raises(
        CheckpointError,
        match=rf"{path}: tensor 'blk\.0\.attn_v\.weight' is stored as Q8_1, "
        r"which is not supported \(supported: F32, F16, BF16, Q8_0",
    ):
        load_pretrained(path)


def test_a_vocabulary_we_cannot_rebuild_fails_before_any_output(files, tmp_path):
    vocab = {**byte_level_vocab("llama-bpe"), "model": "rwkv"}
    hf_model = build_tiny_model("llama", vocab_size=len(vocab["tokens"]))
    path = write_gguf(
        tmp_path / "rwkv.gguf", hf_model, "llama", vocab, lambda name: QType.F32, bos=0, eos=2, add_bos=False
    )
    with pytest.raises(
        ConfigError,
        match=rf"{path}: tokenizer.ggml.model 'rwkv' is not supported "
        r"\(supported: gpt2, llama\)",
    ):
        hf_to_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
