"""gs:// paths against a real Cloud Storage emulator: fetching inputs, staging and pushing outputs."""

import pytest

from clarify_jax.util import storage

pytestmark = pytest.mark.slow  # a real emulator process


def test_remote_inputs_are_fetched_once_into_the_cache(gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "cache"))
    remote = storage.as_path(f"{gcs_bucket}/model")
    (remote / "sub").mkdir(parents=True, exist_ok=True)
    (remote / "config.json").write_text('{"a": 1}')
    (remote / "sub" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    local = storage.local_copy(f"{gcs_bucket}/model")
    assert (local / "config.json").read_text() == '{"a": 1}'
    assert (local / "sub" / "weights.bin").read_bytes() == b"\x00\x01" * 1000
    (remote / "config.json").write_text('{"a": 2}')  # a finished download is reused as is
    assert (storage.local_copy(f"{gcs_bucket}/model") / "config.json").read_text() == '{"a": 1}'
    file = storage.local_copy(f"{gcs_bucket}/model/sub/weights.bin")
    assert file.read_bytes() == b"\x00\x01" * 1000
    assert storage.local_copy(tmp_path) == tmp_path  # a local path is itself
    with pytest.raises(FileNotFoundError, match="/nothing does not exist"):
        storage.local_copy(f"{gcs_bucket}/nothing")


def test_an_output_dir_pushes_what_changed_and_resumes_from_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "cache"))
    url = f"{gcs_bucket}/run"
    with storage.output_dir(url) as out:
        assert out.local != tmp_path and storage.is_remote(url)
        out.local.mkdir(parents=True, exist_ok=True)
        (out.local / "log.jsonl").write_text("1\n")
        out.push()
        assert (storage.as_path(url) / "log.jsonl").read_text() == "1\n"
        with open(out.local / "log.jsonl", "a") as f:  # appends locally, pushed whole
            f.write("2\n")
        (out.local / "plots").mkdir()
        (out.local / "plots" / "a.png").write_bytes(b"png")
    assert (storage.as_path(url) / "log.jsonl").read_text() == "1\n2\n"
    assert (storage.as_path(url) / "plots" / "a.png").read_bytes() == b"png"

    # Another machine (an empty cache) resumes: the bucket's files come back before it writes.
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "other_cache"))
    with storage.output_dir(url) as out:
        assert (out.local / "log.jsonl").read_text() == "1\n2\n"
        with open(out.local / "log.jsonl", "a") as f:
            f.write("3\n")
    assert (storage.as_path(url) / "log.jsonl").read_text() == "1\n2\n3\n"


def test_a_failed_command_still_pushes_what_it_finished(gcs_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "cache"))
    url = f"{gcs_bucket}/eval"
    with pytest.raises(RuntimeError), storage.output_dir(url) as out:
        out.local.mkdir(parents=True, exist_ok=True)
        (out.local / "results.jsonl").write_text("done\n")
        raise RuntimeError("killed halfway")
    assert (storage.as_path(url) / "results.jsonl").read_text() == "done\n"


def test_skipped_folders_stay_where_they_are(gcs_bucket, tmp_path, monkeypatch):
    """A run's checkpoints are orbax's business in the bucket: never pulled into staging, never pushed."""
    monkeypatch.setenv("CLARIFY_JAX_CACHE", str(tmp_path / "cache"))
    url = f"{gcs_bucket}/run"
    (storage.as_path(url) / "checkpoints" / "3").mkdir(parents=True, exist_ok=True)
    (storage.as_path(url) / "checkpoints" / "3" / "big").write_bytes(b"x" * 1000)
    (storage.as_path(url) / "metrics.jsonl").write_text("1\n")
    with storage.output_dir(url, skip=("checkpoints",)) as out:
        assert (out.local / "metrics.jsonl").read_text() == "1\n"
        assert not (out.local / "checkpoints").exists()
        (out.local / "checkpoints").mkdir()
        (out.local / "checkpoints" / "stray").write_text("local only")
    assert not (storage.as_path(url) / "checkpoints" / "stray").exists()
    assert (storage.as_path(url) / "checkpoints" / "3" / "big").read_bytes() == b"x" * 1000
