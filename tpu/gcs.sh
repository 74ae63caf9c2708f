#!/usr/bin/env bash
# Copies run directories, checkpoints, data and exports to and from Cloud Storage, from this machine
# or from the TPU VM workers.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/gcs.sh push LOCAL_PATH gs://BUCKET/PATH [options]
       tpu/gcs.sh pull gs://BUCKET/PATH LOCAL_PATH [options]

push copies LOCAL_PATH to Cloud Storage, pull copies from it. By default with
`gcloud storage rsync --recursive`: the destination becomes a copy of the source's contents, only
changed files are sent, and an interrupted copy resumes when run again. --cp uses
`gcloud storage cp --recursive` instead (a directory is then copied *into* an existing
destination directory, as cp does).

Where: on this machine by default; with --worker, on the TPU VM workers (through ssh, with the
VM's service account), where a relative LOCAL_PATH is relative to the checkout (~/clarify_jax),
as for the commands of tpu/launch.sh. Push from one worker (--worker 0), pull onto all of them
(--worker all) when every host needs the files.

Options:
  --worker W          run on the workers: all, N, or N,M,... (needs --name and --zone)
  --name NAME         TPU VM name     (TPU_NAME)
  --zone ZONE         its zone        (TPU_ZONE)
  --project PROJECT   (TPU_PROJECT)
  --cp                gcloud storage cp --recursive instead of rsync
  --delete            rsync only: also delete destination files that the source does not have
  --remote-dir DIR    checkout on the workers, relative to home (default clarify_jax)
                                                                      (TPU_REMOTE_DIR)
  --dry-run           print the commands instead of running them
  -h, --help          this help

Examples:
  tpu/gcs.sh push --worker 0 runs/dsc-lora gs://my-bucket/runs/dsc-lora
  tpu/gcs.sh pull --worker all gs://my-bucket/ckpt/dsc-6.7b ckpt/dsc-6.7b
  tpu/gcs.sh pull gs://my-bucket/runs/dsc-lora/tensorboard tb/dsc-lora      # here, for TensorBoard
EOF
}

WORKER="" CP=0 DELETE=0
POSITIONAL=()

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --cp) CP=1; shift ;;
        --delete) DELETE=1; shift ;;
        -*) worker_option "$@"; shift "$SHIFT" ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done

((${#POSITIONAL[@]} > 0)) || die "missing the direction: push or pull (see --help)"
DIRECTION=${POSITIONAL[0]}
case $DIRECTION in
    push | pull) ;;
    *) die "the first argument is push or pull, got '$DIRECTION' (see --help)" ;;
esac
((${#POSITIONAL[@]} == 3)) || die "$DIRECTION needs a source and a destination (see --help)"
SRC=${POSITIONAL[1]} DEST=${POSITIONAL[2]}
if [[ $DIRECTION == push ]]; then
    [[ $DEST == gs://?* ]] || die "push: the destination must be gs://BUCKET/PATH, got '$DEST'"
    [[ $SRC != gs://* ]] || die "push: the source is a local path, got '$SRC' (pull copies from gs://)"
    LOCAL=$SRC
else
    [[ $SRC == gs://?* ]] || die "pull: the source must be gs://BUCKET/PATH, got '$SRC'"
    [[ $DEST != gs://* ]] || die "pull: the destination is a local path, got '$DEST'"
    LOCAL=$DEST
fi
[[ $LOCAL != "~"* ]] || die "write $LOCAL without ~ (relative paths are under the checkout on the workers)"
((DELETE == 0 || CP == 0)) || die "--delete goes with rsync, not with --cp"

if ((CP)); then
    COPY=(gcloud storage cp --recursive "$SRC" "$DEST")
else
    COPY=(gcloud storage rsync --recursive "$SRC" "$DEST")
    ((DELETE)) && COPY+=(--delete-unmatched-destination-objects)
fi
MKDIR=()
if [[ $DIRECTION == pull && $CP == 0 ]]; then
    MKDIR=(mkdir -p "$DEST")
fi

if [[ -z $WORKER ]]; then
    [[ ${#MKDIR[@]} -eq 0 ]] || run "${MKDIR[@]}"
    run "${COPY[@]}"
else
    require_tpu
    require_worker "$WORKER"
    remote="cd $(remote_dir)"
    [[ ${#MKDIR[@]} -eq 0 ]] || remote+=" && $(quote_words "${MKDIR[@]}")"
    remote+=" && $(quote_words "${COPY[@]}")"
    tpu_ssh "$WORKER" "$remote"
fi
