#!/usr/bin/env bash
# Installs the project on every worker of a TPU VM: the checkout (copied from here, or cloned), a
# Python >= 3.11 venv, the pinned requirements, the package, and the TPU build of the pinned jax.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/setup.sh --name NAME --zone ZONE [options]

On every worker (or those of --worker), in ~/clarify_jax (--remote-dir):
  1. the code: by default this checkout's tracked and untracked-but-not-ignored files, packed here
     and copied with `gcloud compute tpus tpu-vm scp`; with --git-url, a `git clone` on the worker;
  2. python3 -m venv .venv (python3 when it is 3.11 or newer, else python3.11, installed with apt
     when missing);
  3. pip install -r requirements.txt (torch from the CPU wheel index: it is only used by tests);
  4. pip install --no-deps -e .  (as `make setup` does: the pins above are the dependencies);
  5. pip install 'jax[tpu]==V' with V the jax pin of requirements.txt (the TPU runtime, libtpu);
  6. a check that JAX sees the TPU chips of each worker.
Run it again after changing the code: it copies the files again and re-installs what changed.

Required (or set the variable):
  --name NAME             TPU VM name     (TPU_NAME)
  --zone ZONE             its zone        (TPU_ZONE)
Options:
  --project PROJECT       (TPU_PROJECT)
  --worker W              all (default), N, or N,M,...
  --remote-dir DIR        checkout on the workers, relative to home (default clarify_jax)
                                                                      (TPU_REMOTE_DIR)
  --git-url URL           clone URL instead of copying this checkout (the workers need access)
  --git-ref REF           branch, tag or commit to check out with --git-url (default HEAD)
  --python PY             interpreter for the venv (default: auto, as in step 2)
  --jax-version V         jax version for jax[tpu] (default: the jax== pin of requirements.txt)
  --torch-index URL       extra index for torch (default https://download.pytorch.org/whl/cpu;
                          '' for none)
  --no-check              skip step 6
  --dry-run               print the commands instead of running them
  -h, --help              this help
EOF
}

WORKER=all GIT_URL="" GIT_REF=HEAD PYTHON=auto JAX_VERSION="" CHECK=1
TORCH_INDEX=https://download.pytorch.org/whl/cpu

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --git-url) need_value "$@"; GIT_URL=$2; shift 2 ;;
        --git-ref) need_value "$@"; GIT_REF=$2; shift 2 ;;
        --python) need_value "$@"; PYTHON=$2; shift 2 ;;
        --jax-version) need_value "$@"; JAX_VERSION=$2; shift 2 ;;
        --torch-index) (($# >= 2)) || die "--torch-index needs a value ('' for none)"
            TORCH_INDEX=$2; shift 2 ;;
        --no-check) CHECK=0; shift ;;
        *) worker_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
require_worker "$WORKER"
if [[ -z $JAX_VERSION ]]; then
    JAX_VERSION=$(sed -n 's/^jax==\([^[:space:];#]*\).*/\1/p' "$REPO_ROOT/requirements.txt")
    [[ -n $JAX_VERSION ]] || die "no 'jax==VERSION' line in $REPO_ROOT/requirements.txt: pass --jax-version"
fi
[[ $JAX_VERSION =~ ^[0-9][0-9A-Za-z.+!-]*$ ]] || die "--jax-version: not a version: '$JAX_VERSION'"

DIR=$(remote_dir)
TARBALL_REMOTE=clarify_jax-checkout.tgz

# The install, as one line for the workers' shell; each step stops the rest when it fails.
steps=("set -euo pipefail")
if [[ -n $GIT_URL ]]; then
    steps+=("test -d $DIR/.git || git clone -q $(quote "$GIT_URL") $DIR"
        "cd $DIR"
        "git fetch -q origin $(quote "$GIT_REF")"
        "git checkout -q --force FETCH_HEAD"
        "grep -qx $(quote "jax==$JAX_VERSION") requirements.txt || { echo \"requirements.txt of $(quote "$GIT_REF") does not pin jax==$JAX_VERSION: pass --jax-version\" >&2; exit 1; }")
else
    steps+=("mkdir -p $DIR"
        "tar -xzf $TARBALL_REMOTE -C $DIR"
        "rm -f $TARBALL_REMOTE"
        "cd $DIR")
fi
if [[ $PYTHON == auto ]]; then
    steps+=("py=python3"
        "python3 -c \"import sys; sys.exit(sys.version_info < (3, 11))\" || py=python3.11")
else
    steps+=("py=$(quote "$PYTHON")")
fi
steps+=("if ! \"\$py\" -c \"import ensurepip\" >/dev/null 2>&1; then sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q \"\$py\" \"\$py-venv\"; fi"
    "\"\$py\" -m venv .venv"
    ".venv/bin/pip install -q --upgrade pip")
if [[ -n $TORCH_INDEX ]]; then
    steps+=(".venv/bin/pip install -r requirements.txt --extra-index-url $(quote "$TORCH_INDEX")")
else
    steps+=(".venv/bin/pip install -r requirements.txt")
fi
steps+=(".venv/bin/pip install --no-deps -e ."
    ".venv/bin/pip install \"jax[tpu]==$JAX_VERSION\"")
if ((CHECK)); then
    steps+=("timeout 600 .venv/bin/python -c \"import jax, socket; d = jax.local_devices(); print(socket.gethostname(), jax.__version__, len(d), d[0].device_kind)\"")
fi
REMOTE=""
for step in "${steps[@]}"; do
    REMOTE+="${REMOTE:+; }$step"
done

if [[ -z $GIT_URL ]]; then
    git -C "$REPO_ROOT" rev-parse --git-dir >/dev/null 2>&1 \
        || die "$REPO_ROOT is not a git checkout: pass --git-url to clone on the workers instead"
    TARBALL="${TMPDIR:-/tmp}/clarify_jax-$TPU_NAME-$$.tgz"
    [[ $DRY_RUN == 1 ]] || trap 'rm -f "$TARBALL"' EXIT
    # Tracked and untracked files, less what .gitignore ignores (.venv, outputs) and deleted files.
    run bash -c 'cd "$1" && git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d "" f; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\0" "$f"; fi; done | tar --null -T - -czf "$2"' \
        pack-checkout "$REPO_ROOT" "$TARBALL"
    tpu_scp "$WORKER" "$TARBALL" "$TPU_NAME:$TARBALL_REMOTE"
fi
tpu_ssh "$WORKER" "$REMOTE"
if [[ -z $GIT_URL ]]; then
    run rm -f "$TARBALL"
fi
note "next: tpu/launch.sh --name $TPU_NAME --zone $TPU_ZONE --foreground -- clarify-jax --help"
