"""One side of a benchmark (ours, or the PyTorch reference) in a process of its own.

In one process the two share the allocator, the CPU caches and the thread pools: a user runs
either alone, so the benchmarks build each side in a spawned process and alternate them over
pipes. Both still see the same machine load, neither sees the other's state, and the side that
waits uses no CPU.

Alternating still costs the side that takes more fresh memory per call. XLA:CPU takes a step's
temporaries as one allocation (3.3 GB for a SmolLM2-135M LoRA step of 4 x 512), which glibc maps
and unmaps at every call: 747K page faults a step. Run back to back, alone, they cost 1.5-2 s of
kernel time a step; right after a PEFT step 5-9 s, and 3 s after one untimed step of our own,
while PEFT's kernel time stayed near 1 s either way (2026-12-02). The likely reason is the VM: it
hands freed pages back to its host (Linux free page reporting, on in the Firecracker VMs this
project runs on), so memory freed while the other side ran comes back slowly. The slowdown that
a shared process showed is most likely this one. `settle` gives each timed call the steady state
of a training loop: untimed calls of the same side just before it.

A side is any object built by a picklable factory; `SideProcess.call(name, *args)` runs one of its
methods in the child and returns the result (pickled back), `call_timed` with the seconds it took
there. `LocalSide` gives the same interface in this process, for `--no-isolate` comparisons.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback


def _serve(connection, factory, factory_args) -> None:
    """The child's loop: build the side, then answer (method, args) requests until None arrives."""
    try:
        side = factory(*factory_args)
        connection.send(("ok", None))
    except BaseException:  # noqa: BLE001 - the parent re-raises it with the child's traceback
        connection.send(("error", traceback.format_exc()))
        return
    while (request := connection.recv()) is not None:
        name, args = request
        try:
            connection.send(("ok", _timed(getattr(side, name), args)))
        except BaseException:  # noqa: BLE001
            connection.send(("error", traceback.format_exc()))


def _timed(method, args) -> tuple[object, float]:
    """(method(*args), its seconds): timed where it runs, so no pipe or pickling is counted."""
    start = time.perf_counter()
    result = method(*args)
    return result, time.perf_counter() - start


class SideError(RuntimeError):
    """A side's child process raised; the message carries its traceback."""


class SideProcess:
    """`factory(*factory_args)` built in a spawned child process; its methods run there."""

    def __init__(self, label: str, factory, *factory_args):
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state inherited
        self.label = label
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, factory, factory_args), daemon=True)
        self._process.start()
        child.close()
        self._receive("building")

    def _receive(self, what: str):
        try:
            status, value = self._connection.recv()
        except EOFError:
            raise SideError(
                f"the {self.label} process died while {what} (exit code {self._process.exitcode})"
            ) from None
        if status == "error":
            raise SideError(f"the {self.label} process failed while {what}:\n{value}")
        return value

    def call_timed(self, name: str, *args) -> tuple[object, float]:
        """(the side's `name`(*args), the seconds it took in the child)."""
        self._connection.send((name, args))
        return self._receive(name)

    def call(self, name: str, *args):
        return self.call_timed(name, *args)[0]

    def close(self) -> None:
        if self._process.is_alive():
            self._connection.send(None)
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalSide:
    """The same interface as SideProcess, the side built in this process."""

    def __init__(self, label: str, factory, *factory_args):
        self.label = label
        self._side = factory(*factory_args)

    def call_timed(self, name: str, *args) -> tuple[object, float]:
        return _timed(getattr(self._side, name), args)

    def call(self, name: str, *args):
        return self.call_timed(name, *args)[0]

    def close(self) -> None:
        self._side = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def interleaved_seconds(fns, reps: int, warmup: int, settle: int = 0) -> list[list[float]]:
    """Times `fns` in turn, `reps` rounds after `warmup` untimed ones, so that all see the same
    machine load; with `settle`, each timed call follows that many untimed calls of the same
    function (see the module's docstring). A function that returns a float
    (`lambda: side.call_timed(...)[1]`) gives its own seconds; any other is timed here."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, fn_times in zip(fns, times):
            for _ in range(settle):
                fn()
            start = time.perf_counter()
            seconds = fn()
            fn_times.append(seconds if isinstance(seconds, float) else time.perf_counter() - start)
    return times


def open_side(isolate: bool, label: str, factory, *factory_args):
    """A SideProcess when `isolate`, else a LocalSide."""
    return (SideProcess if isolate else LocalSide)(label, factory, *factory_args)
