"""Run untrusted generated Python in a throwaway, resource-limited child process.

Layers, each used where the OS allows it: a dedicated unprivileged uid per run (when the harness is
root), a private network namespace, a private pid namespace with its own /proc, a private mount
namespace whose /tmp, /var/tmp, /dev/shm and scratch dir are fresh size-capped tmpfs and where every
other mount is read-only, rlimits, a scrubbed environment. This is defence in depth for model-written
code, not a boundary against a determined attacker: the tests run inside the program's interpreter.

Processes: harness -> supervisor (root, reaps every orphan) -> [init: pid 1 of the child's pid
namespace, reports how the child ended] -> sandboxed child.
This file is also the supervisor's script (`python -I sandbox.py CONFIG`), hence stdlib imports only.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

STATUSES = ("passed", "failed", "error", "timeout")
# A run holds uid SANDBOX_UID_BASE + k exclusively (flock), so "kill every process of the uid" is that run's.
SANDBOX_UID_BASE = 64000
SANDBOX_UID_COUNT = 512
_STARTUP_ALLOWANCE_S = 1.0
# How long the supervisor may take, after the sweep, to reap the orphans and exit (it usually takes
# milliseconds). Killed earlier, it leaves unreaped zombies to the container's init; a loaded 2-core
# machine has needed more than 2 s after a fork bomb.
_CLEANUP_GRACE_S = 10.0
_MESSAGE_CHARS = 300
_RECORDS_CAP = 4 << 20
_SCRIPT_STDOUT_CHARS = 1 << 14  # per script record: test outputs are short; records share _RECORDS_CAP
_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 2, 4, 8, 32, 4096, 16384
_MS_PRIVATE = 1 << 18
# Per-mount flags a read-only remount keeps; statvfs's ST_* bits equal these MS_* bits on Linux:
# nosuid, nodev, noexec, synchronous, mandlock, noatime, nodiratime, relatime.
_KEPT_MOUNT_FLAGS = 2 | 4 | 8 | 16 | 64 | 1024 | 2048 | 4096
_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # world-writable: each gets the child's own tmpfs
_PR_SET_CHILD_SUBREAPER, _PR_SET_NO_NEW_PRIVS = 36, 38
_SOURCE_ENCODING = {"encoding": "utf-8", "errors": "surrogatepass"}  # any str round-trips through the file
_libc = ctypes.CDLL(None, use_errno=True)


@dataclasses.dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # wall time per test, as in HumanEvalComm
    memory_bytes: int = 1 << 30  # RLIMIT_AS
    max_processes: int = 64  # RLIMIT_NPROC; Linux ignores it for root, hence the dedicated uid
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE; each private tmpfs holds 4x this
    max_output_bytes: int = 1 << 20  # per stream; the rest is drained and dropped
    no_network: bool = True


@dataclasses.dataclass
class TestOutcome:
    index: int
    status: str  # one of STATUSES
    error_type: str = ""
    message: str = ""


@dataclasses.dataclass
class _RunInfo:
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    network_isolated: bool  # the child really is in its own network namespace
    private_tmp: bool  # the child's /tmp, /var/tmp, /dev/shm and scratch dir are its own tmpfs
    read_only_root: bool  # every other mount the child sees is read-only
    own_pids: bool  # the child is pid 2 of its own pid namespace, and its /proc lists only that namespace
    killed_by_signal: int | None
    output_truncated: bool


@dataclasses.dataclass
class ExecutionResult(_RunInfo):
    tests: list[TestOutcome] = dataclasses.field(default_factory=list)
    passed: int = 0
    total: int = 0

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total  # no tests prove nothing

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


@dataclasses.dataclass
class ProgramResult(_RunInfo):
    returncode: int | None = None  # negative: killed by that signal; None: could not be started


@dataclasses.dataclass
class _RawRun:
    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    records: list = dataclasses.field(default_factory=lambda: [b""])  # [header, test records...]
    output_truncated: bool = False
    timed_out: bool = False
    duration_s: float = 0.0
    launch_error: str = ""

    def info(self, timed_out: bool) -> dict:
        header, code = _json_dict(self.records[0]), self.exit_code
        stdout, stderr = (stream.decode("utf-8", "replace") for stream in (self.stdout, self.stderr))
        return dict(
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            duration_s=self.duration_s,
            output_truncated=self.output_truncated,
            private_tmp=header.get("private_tmp") is True,
            network_isolated=header.get("network_isolated") is True,
            read_only_root=header.get("read_only_root") is True,
            own_pids=header.get("own_pids") is True,
            killed_by_signal=-code if code is not None and code < 0 else None,
        )


# ----------------------------------------------------------------------------------------- public API


def run_tests(program: str, tests: list[str], limits: Limits = Limits(), setup: str = "") -> ExecutionResult:
    """Define `program` (after `setup`) once, then run each test snippet against it in the same child."""
    tests = list(tests)
    wall_s = limits.timeout_s * (len(tests) + 1) + _STARTUP_ALLOWANCE_S  # +1: defining the program
    raw = _run_in_sandbox("tests", {"setup": setup, "tests": tests}, program, limits, wall_s, stdin=None)
    reported = _parse_outcomes(raw.records[1:], len(tests))
    outcomes = [reported.get(i) or _unreported_outcome(i, raw) for i in range(len(tests))]
    timed_out = raw.timed_out or any(o.status == "timeout" for o in outcomes)
    passed = sum(o.status == "passed" for o in outcomes)
    return ExecutionResult(tests=outcomes, passed=passed, total=len(tests), **raw.info(timed_out))


def run_program(code: str, limits: Limits = Limits(), stdin: str | None = None) -> ProgramResult:
    """Run a stdin/stdout style program (APPS) as `python -I solution.py`."""
    raw = _run_in_sandbox("program", {}, code, limits, limits.timeout_s + _STARTUP_ALLOWANCE_S, stdin)
    result = ProgramResult(returncode=raw.exit_code, **raw.info(raw.timed_out))
    result.stderr = result.stderr or raw.launch_error
    return result


@dataclasses.dataclass
class ScriptOutcome:
    """One script run in a fresh interpreter: "ok" (it ended; see returncode), "timeout" or "exception"
    (it could not be run or read), and its stdout, stripped (cut at `max_output_bytes`: truncated)."""

    index: int
    status: str
    returncode: int | None = None
    stdout: str = ""
    truncated: bool = False


@dataclasses.dataclass
class ScriptsResult(_RunInfo):
    scripts: list[ScriptOutcome] = dataclasses.field(default_factory=list)


def run_scripts(
    files: dict[str, str], scripts: list[str], limits: Limits = Limits(), script_name: str = "call_demo.py"
) -> ScriptsResult:
    """Write `files` into one sandbox's scratch dir, then run each script there as
    `python <script_name>` in a fresh interpreter (the scratch dir first on sys.path, as for any
    script), with `limits.timeout_s` of wall time per script, interpreter start included:
    HumanEvalComm's harness, which runs every test as its own process importing the solution."""
    scripts = list(scripts)
    wall_s = (limits.timeout_s + 0.5) * len(scripts) + 2 * _STARTUP_ALLOWANCE_S
    job = {"files": dict(files), "scripts": scripts, "script_name": script_name}
    raw = _run_in_sandbox("scripts", job, "", limits, wall_s, stdin=None)
    reported = {}
    for record in map(_json_dict, raw.records[1:]):
        index = record.get("index")
        if type(index) is int and 0 <= index < len(scripts) and index not in reported:
            reported[index] = ScriptOutcome(
                index,
                str(record.get("status")),
                record.get("returncode"),
                str(record.get("stdout", "")),
                bool(record.get("truncated")),
            )
    setup_error = _json_dict(raw.records[0]).get("setup_error") or raw.launch_error
    unreported = "timeout" if raw.timed_out and not setup_error else "exception"
    outcomes = [reported.get(i) or ScriptOutcome(i, unreported) for i in range(len(scripts))]
    timed_out = raw.timed_out or any(o.status == "timeout" for o in outcomes)
    return ScriptsResult(scripts=outcomes, **raw.info(timed_out))


def run_many(jobs: list[tuple[str, list[str]]], limits: Limits = Limits(), workers: int | None = None):
    """run_tests over many (program, tests) pairs in parallel; results in input order."""
    from concurrent.futures import ThreadPoolExecutor  # threads suffice: the work happens in children

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda job: run_tests(job[0], job[1], limits), jobs))


# ------------------------------------------------------------------------------------ harness side


def _run_in_sandbox(mode, job, program, limits, wall_s, stdin) -> _RawRun:
    with _sandbox_identity() as identity:
        scratch = tempfile.mkdtemp(prefix="clarify-sandbox-")
        try:
            # The job (the tests) is root-only: the child loads and deletes it before dropping privileges.
            with open(os.open(os.path.join(scratch, "job.json"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                json.dump(job, f)
            with open(os.path.join(scratch, "solution.py"), "w", **_SOURCE_ENCODING) as f:
                f.write(program)
            if identity is not None:
                os.chown(scratch, *identity)
            limits_dict = dataclasses.asdict(limits)
            config = {"mode": mode, "scratch": scratch, "identity": identity, "limits": limits_dict}
            return _launch_and_collect(config, limits, wall_s, stdin, identity)
        finally:
            _remove_tree(scratch)


@contextlib.contextmanager
def _sandbox_identity():
    """Yield an exclusive (uid, gid) for this run, or None when not root (no way to switch users)."""
    if os.geteuid() != 0:
        yield None
        return
    lock_dir = _private_lock_dir()
    for uid in range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + SANDBOX_UID_COUNT):
        with contextlib.suppress(KeyError):
            pwd.getpwuid(uid)
            continue  # a real account: never ours to kill
        lock = os.open(os.path.join(lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # also excludes our other threads' fds
        except BlockingIOError:
            os.close(lock)
            continue
        try:
            _kill_every_process_of(uid, uid)  # leftovers of a harness that crashed mid-run
            yield uid, uid
        finally:
            os.close(lock)
        return
    raise RuntimeError("every sandbox uid is busy")


def _private_lock_dir() -> str:
    # Under /run, not /tmp: a sandboxed program could pre-create a /tmp path to block us.
    path = os.path.join("/run" if os.path.isdir("/run") else tempfile.gettempdir(), "clarify-sandbox")
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if info.st_uid != 0 or info.st_mode & 0o077 or os.path.islink(path):
        raise RuntimeError(f"unsafe lock directory {path}")
    return path


def _launch_and_collect(config, limits, wall_s, stdin, identity) -> _RawRun:
    result_r, result_w = os.pipe()
    status_r, status_w = os.pipe()
    config.update(result_fd=result_w, status_fd=status_w)
    scratch = config["scratch"]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": scratch,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": scratch,
    }
    start = time.monotonic()
    try:
        with _stdin_file(stdin) as stdin_file:
            proc = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), json.dumps(config)],
                cwd=scratch,
                env=env,
                stdin=stdin_file,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(result_w, status_w),
                start_new_session=True,
            )
    except (OSError, ValueError) as exc:
        os.close(result_r)
        os.close(status_r)
        return _RawRun(exit_code=None, launch_error=f"{type(exc).__name__}: {exc}")
    finally:
        os.close(result_w)
        os.close(status_w)

    def stop_sandbox():
        if identity is not None:
            _kill_every_process_of(*identity)
        else:
            _kill_group(proc.pid)  # without a dedicated uid, setsid escapees are out of reach

    try:
        streams = {
            "stdout": proc.stdout.fileno(),
            "stderr": proc.stderr.fileno(),
            "records": result_r,
            "status": status_r,
        }
        data, truncated, timed_out = _collect(streams, start + wall_s, limits.max_output_bytes, stop_sandbox)
    finally:
        stop_sandbox()
        try:  # the supervisor exits by itself once every orphan is reaped; killing it first leaves zombies
            proc.wait(timeout=_CLEANUP_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
        # Close through the file objects: an os.close under them would be repeated when they are
        # collected, closing whatever another thread has opened under the same number by then.
        proc.stdout.close()
        proc.stderr.close()
        for fd in (result_r, status_r):
            os.close(fd)
    exit_code = _json_dict(bytes(data["status"])).get("exit_code", proc.returncode)
    return _RawRun(
        exit_code=exit_code if type(exit_code) is int else proc.returncode,
        stdout=bytes(data["stdout"]),
        stderr=bytes(data["stderr"]),
        records=bytes(data["records"]).split(b"\n"),
        output_truncated=truncated,
        timed_out=timed_out,
        duration_s=time.monotonic() - start,
    )


@contextlib.contextmanager
def _stdin_file(text):
    if text is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as f:  # a file, not a pipe: nothing to pump while the child runs
        f.write(text.encode("utf-8", "surrogateescape"))
        f.seek(0)
        yield f


def _collect(streams, deadline, output_cap, stop_sandbox):
    """Read every pipe until all close; stop the sandbox when the program ends or the deadline passes.

    The supervisor closes `status` when the program process exits. Reads go on past a stream's cap, keeping
    nothing, so a flooding program is drained, neither blocked nor buffered in our memory.
    """
    caps = {"stdout": output_cap, "stderr": output_cap, "records": _RECORDS_CAP, "status": 4096}
    data = {name: bytearray() for name in streams}
    truncated = timed_out = False
    stop_at = None
    with selectors.DefaultSelector() as selector:
        for name, fd in streams.items():
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, name)
        while selector.get_map():
            now = time.monotonic()
            program_done = streams["status"] not in selector.get_map()
            if stop_at is None and (program_done or now >= deadline):
                timed_out = not program_done
                stop_sandbox()
                stop_at = time.monotonic() + _CLEANUP_GRACE_S
            elif stop_at is not None and now >= stop_at:
                break  # something we could not kill still holds a pipe
            for key, _ in selector.select(max(0.0, (stop_at or deadline) - now)):
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                room = caps[key.data] - len(data[key.data])
                truncated |= len(chunk) > room and key.data in ("stdout", "stderr")
                data[key.data] += chunk[: max(room, 0)]
    return data, truncated, timed_out


def _live_pids_of(uid: int) -> list[int]:
    """Processes (zombies excluded) with `uid` among their real/effective/saved/fs uids, from /proc."""
    pids = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        zombie = fields.get("State", "").strip()[:1] in ("Z", "X")
        if str(uid) in fields.get("Uid", "").split() and not zombie:
            pids.append(int(name))
    return pids


def _kill_every_process_of(uid: int, gid: int):
    """kill(-1) as `uid` hits all its processes, setsid escapees included. A fork bomb's process
    caught mid-fork still leaves a child the sweep missed, so the sweeps stop them first: a
    stopped process forks no more, and each STOP sweep leaves fewer running, whatever the load."""
    for attempt in range(100):
        live = _live_pids_of(uid)
        if not live:
            return
        try:
            subprocess.run(
                ["/bin/sh", "-c", "kill -STOP -1; kill -STOP -1; kill -STOP -1; kill -KILL -1"],
                user=uid,
                group=gid,
                extra_groups=[],
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
            )
        except (OSError, subprocess.SubprocessError):
            for pid in live:  # racy against a fork bomb, hence the loop
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.002 * attempt)


def _kill_group(pgid: int):
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def _remove_tree(path: str):
    try:
        shutil.rmtree(path)
    except Exception:  # e.g. RecursionError on a hostile deep tree; rm copes with any depth
        subprocess.run(
            ["rm", "-rf", "--", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def _json_dict(line: bytes) -> dict:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_outcomes(lines: list[bytes], total: int) -> dict[int, TestOutcome]:
    outcomes = {}
    for record in map(_json_dict, lines):
        index, status = record.get("index"), record.get("status")
        if type(index) is int and 0 <= index < total and status in STATUSES and index not in outcomes:
            outcomes[index] = TestOutcome(
                index,
                status,
                str(record.get("error_type", ""))[:100],
                str(record.get("message", ""))[:_MESSAGE_CHARS],
            )
    return outcomes


def _unreported_outcome(index: int, raw: _RawRun) -> TestOutcome:
    """Why a test never reported: the harness gave up waiting, or the child could not run or died."""
    setup_error = _json_dict(raw.records[0]).get("setup_error")
    if raw.timed_out:
        return TestOutcome(index, "timeout", "TimeoutError", "wall-clock limit of the whole run exceeded")
    if raw.launch_error or setup_error:
        return TestOutcome(index, "error", "SandboxSetupError", str(raw.launch_error or setup_error))
    if raw.exit_code is not None and raw.exit_code < 0:
        try:
            name = signal.Signals(-raw.exit_code).name
        except ValueError:
            name = str(-raw.exit_code)
        return TestOutcome(index, "error", f"Killed({name})")
    return TestOutcome(index, "error", f"ExitedEarly({raw.exit_code})")


# --------------------------------------------------------------------------------- supervisor side


def _supervise(config: dict):
    """Start the sandboxed child, then reap it and every orphan it leaves (we are their subreaper).

    Where the kernel allows a pid namespace, the child runs as pid 2 under a small init (pid 1): an
    init ignores signals it has no handler for, so the program must not be pid 1, or killing itself
    would fail. When the child ends, the init reports how and exits, and the kernel kills whatever
    is left in the namespace (daemons, setsid escapees) before the init is reaped."""
    _prctl(_PR_SET_CHILD_SUBREAPER)
    config["own_pids"] = _unshare(_CLONE_NEWPID)  # the next fork is pid 1 of a new namespace
    if config["own_pids"] and os.fork() == 0:
        _reap_and_report(config, _start_child(config), until_child_ends=True)  # the namespace's init
    child = None if config["own_pids"] else _start_child(config)
    if child is None:
        os.close(config["status_fd"])  # the init reports
    _reap_and_report(config, child, until_child_ends=False)


def _start_child(config: dict) -> int:
    child = os.fork()
    if child == 0:
        try:
            os.close(config["status_fd"])  # only the reaper may say how the child ended
            _sandboxed_child(config)
        finally:
            os._exit(70)
    return child


def _reap_and_report(config: dict, child: int | None, until_child_ends: bool):
    """Reap every child and orphan; report the exit status of `child`. Exits the process: when the
    child ends (an init, whose exit takes the namespace down), else when nothing is left to reap."""
    os.close(config["result_fd"])
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)  # so the output pipes close once the sandboxed processes are gone
    while True:
        try:
            pid, wait_status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            _write_all(config["status_fd"], json.dumps({"exit_code": os.waitstatus_to_exitcode(wait_status)}))
            os.close(config["status_fd"])
            if until_child_ends:
                os._exit(0)


def _sandboxed_child(config: dict):
    result_fd = config["result_fd"]
    try:
        job_path = os.path.join(config["scratch"], "job.json")
        with open(job_path) as f:
            job = json.load(f)
        os.unlink(job_path)
        with open(os.path.join(config["scratch"], "solution.py"), **_SOURCE_ENCODING) as f:
            job["program"] = config["program"] = f.read()
        header = _isolate(config)
        os.chdir(config["scratch"])  # the fresh one, if its parent dir was covered
    except BaseException as exc:
        _write_all(result_fd, json.dumps({"setup_error": f"{type(exc).__name__}: {exc}"}) + "\n")
        os._exit(71)
    _write_all(result_fd, json.dumps(header) + "\n")
    if config["mode"] == "program":
        os.close(result_fd)
        try:
            os.execv(sys.executable, [sys.executable, "-I", "solution.py"])
        except OSError as exc:
            _write_all(2, f"sandbox: cannot start {sys.executable}: {exc}\n")
            os._exit(127)
    if config["mode"] == "scripts":
        _run_scripts(job, result_fd, config["limits"])
    _run_test_suite(job, result_fd, config["limits"]["timeout_s"])


def _isolate(config: dict) -> dict:
    """Namespaces and mounts (need root), then rlimits, then drop to the sandbox uid for good."""
    limits, identity, scratch = config["limits"], config["identity"], config["scratch"]
    network_isolated = bool(limits["no_network"]) and _unshare(_CLONE_NEWNET)
    header = {
        "network_isolated": network_isolated,
        "private_tmp": False,
        "read_only_root": False,
        "own_pids": False,
    }
    if _unshare(_CLONE_NEWNS) and _mount(None, "/", None, _MS_REC | _MS_PRIVATE):  # private: no leaks to host
        # A /proc of the child's own pid namespace: it lists the sandbox's processes only.
        header["own_pids"] = config["own_pids"] and _mount(
            "proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
        )
        tmpfs_bytes = 4 * limits["max_file_bytes"]
        header["private_tmp"] = _replace_writable_dirs(scratch, tmpfs_bytes, identity, config["program"])
        if identity is not None:
            _expose_interpreter()
        header["read_only_root"] = header["private_tmp"] and _remount_read_only(_WRITABLE_DIRS + (scratch,))
    for kind, value in (
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NPROC, limits["max_processes"]),
    ):
        hard = resource.getrlimit(kind)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (value, value))
    if identity is not None:
        os.setgroups([])
        os.setgid(identity[1])
        os.setuid(identity[0])
        if {os.getuid(), os.geteuid(), os.getgid(), os.getegid()} != set(identity):
            raise PermissionError("could not drop privileges")
    _prctl(_PR_SET_NO_NEW_PRIVS)  # setuid binaries cannot give root back
    return header


def _remount_read_only(writable: tuple[str, ...]) -> bool:
    """Every mount of this (private) namespace read-only except the fresh tmpfs over `writable`:
    a world-writable dir elsewhere (a shared scratch folder with mode 0777) would otherwise be
    open to the generated code. Writing to device nodes (/dev/null) still works. Each mount keeps
    its other flags (nosuid, nodev, noexec, ...), which statvfs reports with the mount's own bits."""
    kept = [os.path.realpath(d) for d in writable if os.path.isdir(d)]
    with open("/proc/self/mountinfo", "rb") as f:
        points = [_unescape_mount_point(line.split()[4]) for line in f]
    all_read_only = True
    for point in dict.fromkeys(points):  # parents first, as mountinfo lists them
        if any(_is_within(point, d) for d in kept) or not os.path.isdir(point):
            continue  # ours, or shadowed by one of ours (or not a dir: a bind-mounted file)
        try:
            flags = os.statvfs(point).f_flag & _KEPT_MOUNT_FLAGS
        except OSError:
            continue  # hidden under a covered dir
        if not _mount(None, point, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | flags):
            all_read_only &= point != "/"
    return all_read_only


def _unescape_mount_point(field: bytes) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def _replace_writable_dirs(scratch: str, size_bytes: int, identity, program: str) -> bool:
    """Fresh tmpfs over the world-writable dirs and over scratch: writes are capped and die with the run.
    What this Python needs from under them (a checkout or venv in /tmp) is bound back, read-only."""
    needed = _interpreter_paths()
    covered = [
        _cover_with_tmpfs(d, [p for p in needed if _is_within(p, d)], f"mode=1777,size={size_bytes}")
        for d in _WRITABLE_DIRS
        if os.path.isdir(d)
    ]
    if os.path.isdir(scratch):  # scratch is elsewhere: cover it in place
        covered.append(_cover_with_tmpfs(scratch, [], f"mode=700,size={size_bytes}"))
    else:
        os.makedirs(scratch, mode=0o700)
    with open(os.path.join(scratch, "solution.py"), "w", **_SOURCE_ENCODING) as f:
        f.write(program)
    if identity is not None:
        os.chown(scratch, *identity)
    return all(covered)


def _is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, os.path.realpath(directory)]) == os.path.realpath(directory)


def _interpreter_paths() -> list[str]:
    """The outermost directories this Python needs: its prefixes, its binary's dir, its import path."""
    candidates = [
        sys.base_prefix,
        sys.base_exec_prefix,
        sys.prefix,
        sys.exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *filter(os.path.isdir, sys.path),
    ]
    needed: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates}):
        if not any(_is_within(path, outer) for outer in needed):  # nested: bound already
            needed.append(path)
    return needed


def _expose_interpreter():
    """Let the sandbox uid run this Python even from a private dir (e.g. /root/.pyenv): cover that dir with an
    empty tmpfs showing only the interpreter's dirs, read-only."""
    by_blocker: dict[str, list[str]] = {}
    for path in _interpreter_paths():
        parts = path.split(os.sep)[1:-1]
        ancestors = [os.sep + os.path.join(*parts[:depth]) for depth in range(1, len(parts) + 1)]
        blocker = next((a for a in ancestors if not os.stat(a).st_mode & 0o001), None)  # no o+x
        if blocker:
            by_blocker.setdefault(blocker, []).append(path)
    for blocker, paths in by_blocker.items():
        _cover_with_tmpfs(blocker, paths, "mode=755,size=1m")


def _cover_with_tmpfs(directory: str, keep: list[str], options: str) -> bool:
    """Mount an empty tmpfs over `directory`, then bind the `keep` paths back, read-only."""
    handles = [os.open(path, os.O_PATH | os.O_CLOEXEC) for path in keep]  # still reachable once covered
    try:
        if not _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, options):
            return False
        for path, handle in zip(keep, handles):
            os.makedirs(path, exist_ok=True)
            if not _mount(f"/proc/self/fd/{handle}", path, None, _MS_BIND | _MS_REC):
                return False
            _mount(None, path, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY)
        return True
    finally:
        for handle in handles:
            os.close(handle)


def _unshare(flags: int) -> bool:
    if hasattr(os, "unshare"):  # Python >= 3.12
        try:
            os.unshare(flags)
            return True
        except OSError:
            return False
    return _libc.unshare(ctypes.c_int(flags)) == 0


def _mount(source, target, fstype, flags: int, data=None) -> bool:
    args = [None if s is None else os.fsencode(s) for s in (source, target, fstype)]
    return _libc.mount(*args, ctypes.c_ulong(flags), None if data is None else os.fsencode(data)) == 0


def _prctl(option: int):
    _libc.prctl(option, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


class _TestTimeout(BaseException):
    """A BaseException so that the program's `except Exception` cannot swallow it."""


def _raise_test_timeout(signum, frame):
    raise _TestTimeout()


def _run_test_suite(job: dict, result_fd: int, timeout_s: float):
    main_pid = os.getpid()
    signal.signal(signal.SIGALRM, _raise_test_timeout)
    namespace = {"__name__": "solution", "__builtins__": builtins}  # not __main__: skip main-guarded demos
    definition_sources = [(job["setup"], "setup.py"), (job["program"], "solution.py")]
    definition = _timed_run(definition_sources, namespace, timeout_s)
    for index, test in enumerate(job["tests"]):
        if definition[0] == "passed":
            status, error_type, message = _timed_run([(test, f"<test {index}>")], namespace, timeout_s)
        else:  # every test inherits the definition's failure; a failed top-level assert is an error
            status, error_type, message = definition
            status = "timeout" if status == "timeout" else "error"
        if os.getpid() != main_pid:
            os._exit(0)  # a forked copy of the runner must neither report nor run further tests
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        record = {"index": index, "status": status, "error_type": error_type, "message": message}
        try:
            _write_all(result_fd, json.dumps(record) + "\n")
        except OSError:
            os._exit(0)
    os._exit(0)  # skip atexit handlers and non-daemon threads the program may have left


def _run_scripts(job: dict, result_fd: int, limits: dict):
    """The scripts mode: the files, then each script as `python <script_name>` in its own process
    (subprocess.run with a timeout, as HumanEvalComm's intermedia_analyze.py runs its tests)."""
    for name, text in job["files"].items():
        with open(name, "w", **_SOURCE_ENCODING) as f:
            f.write(text)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.getcwd(), "LANG": "C.UTF-8", "TMPDIR": os.getcwd()}
    for index, script in enumerate(job["scripts"]):
        record = {"index": index, "status": "exception"}
        try:
            with open(job["script_name"], "w", **_SOURCE_ENCODING) as f:
                f.write(script)
            # -s -E: no user site-packages, no PYTHON* variables; the script's dir stays on sys.path.
            output = subprocess.run(
                [sys.executable, "-s", "-E", job["script_name"]],
                capture_output=True,
                text=True,
                timeout=limits["timeout_s"],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            stdout = output.stdout.strip()
            cap = min(limits["max_output_bytes"], _SCRIPT_STDOUT_CHARS)
            record.update(
                status="ok", returncode=output.returncode, stdout=stdout[:cap], truncated=len(stdout) > cap
            )
        except subprocess.TimeoutExpired:
            record["status"] = "timeout"
        except Exception:  # the benchmark's harness counts any other failure as an 'Exception'
            pass
        try:
            _write_all(result_fd, json.dumps(record) + "\n")
        except OSError:
            os._exit(0)
    os._exit(0)


def _timed_run(sources, namespace, timeout_s) -> tuple[str, str, str]:
    """Exec the sources under a per-test alarm; (status, error type, message)."""
    timeout = ("timeout", "TimeoutError", f"test exceeded {timeout_s:g}s")
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            for source, filename in sources:
                exec(compile(source, filename, "exec"), namespace)
            return "passed", "", ""
        except _TestTimeout:
            return timeout
        except BaseException as exc:
            status = "failed" if isinstance(exc, AssertionError) else "error"
            try:
                return status, str(type(exc).__name__)[:100], str(exc)[:_MESSAGE_CHARS]
            except BaseException:  # a hostile __str__
                return status, "UnprintableException", ""
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TestTimeout:  # the alarm fired as the timed region ended
        return timeout


def _write_all(fd: int, text: str):
    data = text.encode("utf-8", "backslashreplace")
    while data:
        data = data[os.write(fd, data) :]


if __name__ == "__main__":
    _supervise(json.loads(sys.argv[1]))
