#!/usr/bin/env bash
# Stops what holds the TPU on every worker: commands started by tpu/launch.sh and python processes
# with the TPU device files open (/dev/accel* on v2-v4 and v5p, /dev/vfio/* on v5e and v6e). SIGTERM
# first (`clarify-jax train` saves a checkpoint and exits), SIGKILL after a grace period.
# Single-quoted $ throughout: the workers' shell expands it, not this one.
# shellcheck disable=SC2016
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/stop.sh --name NAME --zone ZONE [options]

On every worker (or those of --worker):
  1. finds the commands that tpu/launch.sh started (logs/worker-N.pid) and the python processes
     that hold the TPU (`sudo lsof -t -w /dev/accel* /dev/vfio/*`), and lists them;
  2. sends them SIGTERM (`clarify-jax train` then saves a checkpoint at the next step and exits 0:
     restart with --resume), waits up to --grace seconds, then SIGKILLs what is left, with the
     process groups of the launched commands;
  3. removes /tmp/libtpu_lockfile, so that the next program can open the TPU.
Use it when JAX reports that the TPU is in use ("TPU ... already in use by process ..."), after an
interrupted run, or to stop a training run cleanly.

Required (or set the variable):
  --name NAME         TPU VM name     (TPU_NAME)
  --zone ZONE         its zone        (TPU_ZONE)
Options:
  --project PROJECT   (TPU_PROJECT)
  --worker W          all (default), N, or N,M,...
  --grace SECONDS     wait this long after SIGTERM before SIGKILL (default 120; a full fine-tune's
                      checkpoint can need more)
  --kill              SIGKILL at once, without SIGTERM (no checkpoint is saved)
  --any-process       also stop TPU holders that are not python
  --log-dir DIR       launch.sh's log directory, relative to the checkout (default logs)
  --remote-dir DIR    checkout on the workers, relative to home (default clarify_jax)
                                                                      (TPU_REMOTE_DIR)
  --dry-run           print the gcloud command instead of running it
  -h, --help          this help
EOF
}

WORKER=all GRACE=120 KILL=0 ANY=0 LOG_DIR=logs

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --grace) need_value "$@"; GRACE=$2; shift 2 ;;
        --kill) KILL=1; shift ;;
        --any-process) ANY=1; shift ;;
        --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
        *) worker_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
require_worker "$WORKER"
require_int --grace "$GRACE"
((KILL)) && GRACE=0
SIGNAL=TERM
((KILL)) && SIGNAL=KILL

DIR=$(remote_dir)
LOGS=$(remote_path --log-dir "$LOG_DIR")

# The workers' script, one statement per element (no set -e: it stops what it can).
if ((ANY)); then
    other='targets+=("$p")'
else
    other='echo "$h: pid $p holds the TPU and is not python, left running (--any-process stops it): $a"'
fi
steps=('h=$(hostname)'
    'shopt -s nullglob'
    "pidfiles=($DIR/$LOGS/worker-*.pid)"
    'devs=(/dev/accel* /dev/vfio/*)'
    # Launched commands: session leaders (setsid) whose pid is in a pid file.
    'leaders=(); for f in "${pidfiles[@]}"; do p=$(cat "$f"); [ -n "$p" ] && [ "$(ps -o sid= -p "$p" 2>/dev/null | tr -d " ")" = "$p" ] && leaders+=("$p"); done'
    'targets=("${leaders[@]}")'
    'if [ ${#devs[@]} -gt 0 ]; then for p in $(sudo lsof -t -w "${devs[@]}" 2>/dev/null | sort -un); do case " ${targets[*]} " in *" $p "*) continue ;; esac; a=$(ps -o args= -p "$p" 2>/dev/null); case "$a" in *python*) targets+=("$p") ;; *) '"$other"' ;; esac; done; fi'
    'if [ ${#targets[@]} -eq 0 ]; then echo "$h: nothing holds the TPU"; else echo "$h: stopping:"; ps -o pid,etime,args -p "$(IFS=,; echo "${targets[*]}")"; sudo kill -'"$SIGNAL"' "${targets[@]}" 2>/dev/null; fi'
    'left=("${targets[@]}"); for _ in $(seq 0 '"$GRACE"'); do still=(); for p in "${left[@]}"; do sudo kill -0 "$p" 2>/dev/null && still+=("$p"); done; left=("${still[@]}"); [ ${#left[@]} -eq 0 ] && break; sleep 1; done'
    'if [ ${#left[@]} -gt 0 ]; then echo "$h: still running after '"$GRACE"' s, SIGKILL: ${left[*]}"; sudo kill -KILL "${left[@]}" 2>/dev/null; fi'
    # What the launched commands started (data loader workers, ...): their process groups.
    'for p in "${leaders[@]}"; do sudo kill -KILL -- "-$p" 2>/dev/null; done'
    'rm -f "${pidfiles[@]}"'
    'sudo rm -f /tmp/libtpu_lockfile'
    'sleep 1; busy=""; [ ${#devs[@]} -gt 0 ] && busy=$(sudo lsof -t -w "${devs[@]}" 2>/dev/null | tr "\n" " ")'
    'if [ -n "$busy" ]; then echo "$h: the TPU is still held by: $busy"; exit 1; else echo "$h: TPU free"; fi')
REMOTE=""
for step in "${steps[@]}"; do
    REMOTE+="${REMOTE:+; }$step"
done

tpu_ssh "$WORKER" "$REMOTE"
