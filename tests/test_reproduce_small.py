"""scripts/reproduce_small.py: the key under which the untrained model's evaluation is shared
between out dirs."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from reproduce_small import untrained_cache  # noqa: E402


def _model(root: Path, config: str = '{"hidden_size": 8}') -> Path:
    model = root / "smollm2"
    (model / "params" / "d").mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text(config)
    (model / "params" / "d" / "0").write_bytes(b"\0" * 16)
    return model


def test_the_key_follows_the_items_settings_data_and_model(tmp_path):
    model = _model(tmp_path)
    comm = tmp_path / "HumanEvalComm.jsonl"
    comm.write_text('{"name": "HumanEval/4"}\n')
    args = ["--max-tokens", 256, "--problems", "HumanEval/4"]

    key = untrained_cache(model, args, comm)
    assert key.parent == tmp_path / "untrained_eval"
    assert untrained_cache(model, list(args), comm) == key  # same inputs, same place

    assert untrained_cache(model, ["--max-tokens", 128, "--problems", "HumanEval/4"], comm) != key
    assert untrained_cache(model, [*args, "HumanEval/41"], comm) != key
    comm.write_text('{"name": "HumanEval/4", "prompt": "changed"}\n')
    assert untrained_cache(model, args, comm) != key
    comm.write_text('{"name": "HumanEval/4"}\n')
    assert untrained_cache(model, args, comm) == key
    _model(tmp_path, '{"hidden_size": 16}')
    assert untrained_cache(model, args, comm) != key
    _model(tmp_path)
    (model / "params" / "d" / "0").write_bytes(b"\1" * 16)  # other parameters
    assert untrained_cache(model, args, comm) != key
