"""Paths that may name a Cloud Storage location (`gs://bucket/prefix`) as well as a local one.

Orbax and TensorStore write and read checkpoints on gs:// themselves (`as_path`). Everything else a
command reads or writes (JSON lines, safetensors, tokenizer files, plots, TensorBoard events) goes
through a local directory: a remote input is fetched once into a cache (`local_copy`), a remote
output is written to a staging directory and pushed to the bucket after each flush and at the end
(`output_dir`). Cloud Storage has no append, which a JSON-lines log needs, and TensorBoard's own
GCS writer re-uploads whole files at every flush.

Credentials come from the environment as for any Google client (Application Default Credentials on
a TPU VM). `STORAGE_EMULATOR_HOST` and `TENSORSTORE_GCS_HTTP_URL` point both clients at an
emulator, as the tests do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

# gcsfs 2026.x first asks the storage-control gRPC API what kind of bucket it talks to; that API
# does not exist on emulators (each call waits 60 s) and plain buckets do not need it. Read when
# gcsfs is imported, so set before anything imports it.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

REMOTE_PREFIXES = ("gs://",)
_COMPLETE = ".clarify_jax_complete"  # written last into a fetched directory


def is_remote(path: str | os.PathLike) -> bool:
    return str(path).startswith(REMOTE_PREFIXES)


def as_path(path: str | os.PathLike):
    """An `etils.epath.Path` for a gs:// location (orbax and TensorStore take it as is), else an
    absolute `pathlib.Path`."""
    if not is_remote(path):
        return Path(path).absolute()
    import fsspec.config
    from etils import epath

    # Orbax, TensorStore and this module each write through their own client: a cached listing
    # would hide the others' objects (a finished checkpoint step, a pushed file).
    fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)
    return epath.Path(str(path))


def cache_root() -> Path:
    return Path(os.environ.get("CLARIFY_JAX_CACHE", "~/.cache/clarify_jax")).expanduser()


def _cache_dir(kind: str, uri: str) -> Path:
    """A folder per URL, ending in the URL's own last name (which commands show or read)."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return cache_root() / kind / digest / (uri.rstrip("/").rsplit("/", 1)[-1] or "root")


def _files_under(root) -> Iterator[tuple[str, object]]:
    """(relative posix path, path) of every file under a local or remote directory."""
    if is_remote(root):
        import fsspec

        base = str(root).removeprefix("gs://").rstrip("/")
        for name in fsspec.filesystem("gcs").find(base):
            yield name[len(base) + 1 :], as_path("gs://" + name)
        return
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            yield path.relative_to(root).as_posix(), path


def local_copy(path: str | os.PathLike) -> Path:
    """A local path with the contents of `path`: the path itself when it is local; for gs:// a copy
    of the file or directory tree in the cache, downloaded once (a directory is reused only when its
    download finished)."""
    if not is_remote(path):
        return Path(path)
    remote = as_path(path)
    target = _cache_dir("remote", str(path))
    if not remote.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not remote.is_dir():
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            _copy(remote, partial)
            partial.replace(target)
        return target
    if not (target / _COMPLETE).exists():
        shutil.rmtree(target, ignore_errors=True)
        for relative, source in _files_under(remote):
            _copy(source, target / relative)
        target.mkdir(parents=True, exist_ok=True)
        (target / _COMPLETE).write_text(str(path))
    return target


class OutputDir:
    """Where a command writes its files: `local`, pushed to `remote` (when there is one) by `push`.
    Folders named in `skip` are left alone both ways (a run's checkpoints, which orbax writes to
    the bucket itself)."""

    def __init__(self, path: str | os.PathLike, skip: tuple[str, ...] = ()):
        self.remote = as_path(path) if is_remote(path) else None
        self.local = _cache_dir("staging", str(path)) if self.remote is not None else Path(path)
        self.skip = skip
        self._pushed: dict[str, tuple[int, int]] = {}

    def _files(self, root) -> Iterator[tuple[str, object]]:
        for relative, path in _files_under(root):
            if relative.split("/", 1)[0] not in self.skip:
                yield relative, path

    def pull(self) -> None:
        """Fetch the remote files the staging directory lacks (a resumed run's logs and results)."""
        if self.remote is None or not self.remote.exists():
            return
        for relative, source in self._files(self.remote):
            destination = self.local / relative
            if not destination.exists():
                _copy(source, destination)
            self._pushed[relative] = _signature(destination)

    def push(self) -> None:
        """Upload every file written or changed since the last push."""
        if self.remote is None or not self.local.exists():
            return
        for relative, source in self._files(self.local):
            signature = _signature(source)
            if self._pushed.get(relative) != signature:
                _copy(source, self.remote / relative)
                self._pushed[relative] = signature


def _copy(source, destination) -> None:
    """One file, streamed (safetensors shards and checkpoint files do not fit in memory twice)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, destination.open("wb") as writer:
        shutil.copyfileobj(reader, writer, 16 << 20)


def _signature(path) -> tuple[int, int]:
    stat = os.stat(path)  # a local file
    return stat.st_size, stat.st_mtime_ns


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, skip: tuple[str, ...] = ()) -> Iterator[OutputDir]:
    """An OutputDir with what a gs:// output already holds pulled in, pushed when the block ends
    (also when it fails: whatever was finished is kept)."""
    out = OutputDir(path, skip)
    out.pull()
    try:
        yield out
    finally:
        out.push()
