#!/usr/bin/env bash
# Shows or fetches the per-worker logs written by tpu/launch.sh (logs/worker-N.log on each worker).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/logs.sh --name NAME --zone ZONE [--worker W] [--lines N] [--follow]
       tpu/logs.sh --name NAME --zone ZONE --fetch LOCAL_DIR

Without --fetch: the last --lines lines of each worker's log (tail -v, so each block is headed by
its file name), and with --follow everything that comes after (Ctrl-C stops following, not the
command). With --fetch: copies logs/worker-N.log of every worker into LOCAL_DIR here.

Required (or set the variable):
  --name NAME         TPU VM name     (TPU_NAME)
  --zone ZONE         its zone        (TPU_ZONE)
Options:
  --project PROJECT   (TPU_PROJECT)
  --worker W          all (default), N, or N,M,...
  --lines N           lines to show (default 50)
  --follow            keep printing what is appended (tail -F)
  --fetch LOCAL_DIR   copy the logs here instead of showing them
  --log-dir DIR       launch.sh's log directory, relative to the checkout (default logs)
  --remote-dir DIR    checkout on the workers, relative to home (default clarify_jax)
                                                                      (TPU_REMOTE_DIR)
  --dry-run           print the gcloud commands instead of running them
  -h, --help          this help
EOF
}

WORKER=all LINES=50 FOLLOW=0 FETCH="" LOG_DIR=logs

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --lines) need_value "$@"; LINES=$2; shift 2 ;;
        --follow) FOLLOW=1; shift ;;
        --fetch) need_value "$@"; FETCH=$2; shift 2 ;;
        --log-dir) need_value "$@"; LOG_DIR=$2; shift 2 ;;
        *) worker_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
require_worker "$WORKER"
require_int --lines "$LINES"
LOGS="$(remote_dir)/$(remote_path --log-dir "$LOG_DIR")"

if [[ -n $FETCH ]]; then
    ((FOLLOW == 0)) || die "--fetch and --follow exclude each other"
    run mkdir -p "$FETCH"
    tpu_scp "$WORKER" "$TPU_NAME:$LOGS/worker-*.log" "$FETCH/"
else
    follow=""
    ((FOLLOW)) && follow=" -F"
    tpu_ssh "$WORKER" "tail -v -n $LINES$follow $LOGS/worker-*.log"
fi
