#!/usr/bin/env bash
# Runs one command on every worker of a TPU VM at once, in the project's checkout and venv, with one
# log file per worker (logs/worker-N.log); detached with nohup by default, so it outlives the ssh.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/launch.sh --name NAME --zone ZONE [options] -- COMMAND [ARGS...]

Starts COMMAND on every worker (`gcloud compute tpus tpu-vm ssh --worker=all`) at the same time, as
a multi-host JAX program needs. On each worker it runs in ~/clarify_jax (--remote-dir) with
.venv/bin first on PATH (so `clarify-jax` and `python` are the project's), PYTHONUNBUFFERED=1, and
any --env settings; output is appended to logs/worker-N.log there (N: the worker number from the
TPU metadata). By default the command is detached (setsid nohup; its pid in logs/worker-N.pid) and
the script returns at once: follow it with tpu/logs.sh, stop it with tpu/stop.sh.

On a multi-host slice (v5litepod-16, v4-16, v5p-16, ...) `clarify-jax train` needs
--distributed.initialize; nothing else: on Cloud TPU VMs JAX finds the coordinator, the number of
processes and its own process id from the TPU metadata.

The words after -- are passed as they are (each is quoted for the workers' shell); for pipes or
&&, pass `bash -c '...'`. Paths are relative to the checkout on the workers; do not write ~/...
unquoted here, as your local shell would expand it to your local home.

Required (or set the variable):
  --name NAME         TPU VM name     (TPU_NAME)
  --zone ZONE         its zone        (TPU_ZONE)
Options:
  --project PROJECT   (TPU_PROJECT)
  --worker W          all (default), N, or N,M,...
  --env KEY=VALUE     an environment variable for COMMAND (repeatable), e.g.
                      --env JAX_COMPILATION_CACHE_DIR=gs://BUCKET/jax-cache
  --foreground        stay attached: stream the output here (still appended to the log) and
                      return COMMAND's exit status; a dropped ssh connection ends it
  --log-dir DIR       log directory, relative to the checkout (default logs)
  --remote-dir DIR    checkout on the workers, relative to home (default clarify_jax)
                                                                      (TPU_REMOTE_DIR)
  --dry-run           print the gcloud command instead of running it
  -h, --help          this help

Examples:
  tpu/launch.sh --foreground -- clarify-jax --help
  tpu/launch.sh -- clarify-jax train deepseek-6.7b-lora-v5p-8 --model ckpt/dsc --out /mnt/gcs/runs/dsc ...
EOF
}

WORKER=all FOREGROUND=0 LOG_DIR=logs
ENV_WORDS=()
COMMAND=()

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --) shift; COMMAND=("$@"); break ;;
        --env)
            (($# >= 2)) || die "--env needs KEY=VALUE"
            [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env needs KEY=VALUE, got '$2'"
            ENV_WORDS+=("${2%%=*}=$(quote "${2#*=}")"); shift 2 ;;
        --foreground) FOREGROUND=1; shift ;;
        --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
        -*) worker_option "$@"; shift "$SHIFT" ;;
        *) die "unexpected argument '$1': put the command to run after -- (see --help)" ;;
    esac
done

require_tpu
require_worker "$WORKER"
((${#COMMAND[@]} > 0)) || die "missing the command to run: put it after -- (see --help)"

DIR=$(remote_dir)
LOGS=$(remote_path --log-dir "$LOG_DIR")
CMD=$(quote_words "${COMMAND[@]}")
METADATA=http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number

steps=("set -euo pipefail"
    "cd $DIR"
    "mkdir -p $LOGS"
    "w=\$(curl -sf --max-time 5 -H \"Metadata-Flavor: Google\" $METADATA || hostname | sed -n \"s/.*-w-\\([0-9]*\\)\$/\\1/p\")"
    "w=\${w:-0}"
    "log=$LOGS/worker-\$w.log"
    "pidfile=$LOGS/worker-\$w.pid"
    "if [ -f \"\$pidfile\" ] && kill -0 \"\$(cat \"\$pidfile\")\" 2>/dev/null; then echo \"worker \$w: the command of an earlier launch (pid \$(cat \"\$pidfile\")) still runs; tpu/stop.sh stops it\" >&2; exit 1; fi"
    "export PATH=\"\$PWD/.venv/bin:\$PATH\" PYTHONUNBUFFERED=1${ENV_WORDS[*]+ ${ENV_WORDS[*]}}"
    "echo \"=== \$(date -u +%Y-%m-%dT%H:%M:%SZ) \$(hostname) worker \$w: start\" >> \"\$log\"")
if ((FOREGROUND)); then
    steps+=("$CMD < /dev/null 2>&1 | tee -a \"\$log\"")
else
    steps+=("setsid nohup $CMD >> \"\$log\" 2>&1 < /dev/null &"
        "echo \$! > \"\$pidfile\""
        "echo \"worker \$w (\$(hostname)): started pid \$!, log \$PWD/\$log\"")
fi
REMOTE=""
for step in "${steps[@]}"; do
    # A step ending in & is already separated from the next one.
    if [[ -z $REMOTE || $REMOTE == *"&" ]]; then
        REMOTE+="${REMOTE:+ }$step"
    else
        REMOTE+="; $step"
    fi
done

tpu_ssh "$WORKER" "$REMOTE"
if ((!FOREGROUND)) && [[ $DRY_RUN != 1 ]]; then
    note "started; follow with: tpu/logs.sh --name $TPU_NAME --zone $TPU_ZONE --follow"
fi
