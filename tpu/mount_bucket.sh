#!/usr/bin/env bash
# Mounts a Cloud Storage bucket at the same path on every worker with Cloud Storage FUSE (gcsfuse),
# so that all hosts of a slice share the run directory (orbax writes one checkpoint from all of
# them) and checkpoints outlive a preempted VM.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/mount_bucket.sh --name NAME --zone ZONE --bucket BUCKET [options]

On every worker: installs gcsfuse from Google's apt repository when it is missing, creates the
mount point (owned by your user) and mounts the bucket there unless something is mounted already.
Write `clarify-jax train --out /mnt/gcs/runs/NAME` to keep the run (checkpoints, metrics) in the
bucket. The mount does not survive a reboot or a new VM: run this again after tpu/setup.sh.

The default gcsfuse flags: --implicit-dirs (see directories that other tools created),
--rename-dir-limit=1000000 (orbax finishes a checkpoint by renaming its directory; gcsfuse
renames a directory by copying it), --metadata-cache-ttl-secs=0 (every host sees the files the
others have just written).

Required (or set the variable):
  --name NAME            TPU VM name     (TPU_NAME)
  --zone ZONE            its zone        (TPU_ZONE)
  --bucket BUCKET        bucket name, without gs://                  (TPU_BUCKET)
Options:
  --project PROJECT      (TPU_PROJECT)
  --worker W             all (default), N, or N,M,...
  --mount-point DIR      absolute path (default /mnt/gcs)
  --gcsfuse-flags FLAGS  replaces the default flags (one string, e.g. "--implicit-dirs")
  --unmount              unmount instead
  --dry-run              print the gcloud command instead of running it
  -h, --help             this help
EOF
}

BUCKET=${TPU_BUCKET:-} WORKER=all MOUNT_POINT=/mnt/gcs UNMOUNT=0
GCSFUSE_FLAGS="--implicit-dirs --rename-dir-limit=1000000 --metadata-cache-ttl-secs=0"

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --bucket) need_value "$@"; BUCKET=$2; shift 2 ;;
        --worker) need_value "$@"; WORKER=$2; shift 2 ;;
        --mount-point) need_value "$@"; MOUNT_POINT=$2; shift 2 ;;
        --gcsfuse-flags) need_value "$@"; GCSFUSE_FLAGS=$2; shift 2 ;;
        --unmount) UNMOUNT=1; shift ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
require_worker "$WORKER"
BUCKET=${BUCKET#gs://}
BUCKET=${BUCKET%/}
if ((!UNMOUNT)); then
    require "$BUCKET" --bucket TPU_BUCKET
    [[ $BUCKET =~ ^[a-z0-9][a-z0-9._-]*[a-z0-9]$ ]] || die "--bucket: not a bucket name: '$BUCKET'"
fi
[[ $MOUNT_POINT == /* ]] || die "--mount-point must be an absolute path, got '$MOUNT_POINT'"
MP=$(remote_path --mount-point "$MOUNT_POINT")
[[ $GCSFUSE_FLAGS =~ ^[A-Za-z0-9_=.,:/\ -]*$ ]] || die "--gcsfuse-flags: only flags and plain values, got '$GCSFUSE_FLAGS'"

if ((UNMOUNT)); then
    # shellcheck disable=SC2016  # expanded on the workers
    REMOTE='if mountpoint -q '"$MP"'; then fusermount -u '"$MP"' 2>/dev/null || fusermount3 -u '"$MP"' 2>/dev/null || sudo umount '"$MP"'; fi; echo "$(hostname): '"$MP"' unmounted"'
else
    # shellcheck disable=SC2016  # expanded on the workers
    REMOTE='set -euo pipefail; if ! command -v gcsfuse >/dev/null; then curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null; echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null; sudo apt-get update -q; sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcsfuse; fi; sudo mkdir -p '"$MP"'; if mountpoint -q '"$MP"'; then echo "$(hostname): '"$MP"' is already mounted"; else sudo chown "$(id -u):$(id -g)" '"$MP"'; gcsfuse '"$GCSFUSE_FLAGS $BUCKET $MP"'; echo "$(hostname): gs://'"$BUCKET"' mounted at '"$MP"'"; fi'
fi
tpu_ssh "$WORKER" "$REMOTE"
