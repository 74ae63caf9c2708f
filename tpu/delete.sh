#!/usr/bin/env bash
# Deletes a TPU VM (or its queued resource, with the VM), which stops its billing. Its disks go with
# it: copy what you need to Cloud Storage first (tpu/gcs.sh).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/delete.sh --name NAME --zone ZONE [options]

Deletes the TPU VM (`gcloud compute tpus tpu-vm delete`), or with --queued its queued resource and
the VM in it (`gcloud compute tpus queued-resources delete --force`). A VM created with
tpu/create.sh --queued is deleted with --queued; a preempted spot VM of a queued resource stays
listed (SUSPENDED) until then. gcloud asks for confirmation unless --yes.

Required (or set the variable):
  --name NAME               TPU VM name     (TPU_NAME)
  --zone ZONE               its zone        (TPU_ZONE)
Options:
  --project PROJECT         (TPU_PROJECT)
  --queued                  delete the queued resource (and its VM)
  --queued-resource-id ID   the queued resource's name (default: the TPU name)
  --yes                     no confirmation prompt (gcloud --quiet)
  --async                   return without waiting for the deletion to finish
  --dry-run                 print the gcloud command instead of running it
  -h, --help                this help
EOF
}

QUEUED=0 QUEUED_RESOURCE_ID="" YES=0 ASYNC=0

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --queued) QUEUED=1; shift ;;
        --queued-resource-id) need_value "$@"; QUEUED_RESOURCE_ID=$2; QUEUED=1; shift 2 ;;
        --yes) YES=1; shift ;;
        --async) ASYNC=1; shift ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
location_flags
FLAGS=()
((ASYNC)) && FLAGS+=(--async)
((YES)) && FLAGS+=(--quiet)

if ((QUEUED)); then
    run gcloud compute tpus queued-resources delete "${QUEUED_RESOURCE_ID:-$TPU_NAME}" "${LOCATION[@]}" --force \
        ${FLAGS[@]+"${FLAGS[@]}"}
else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" ${FLAGS[@]+"${FLAGS[@]}"}
fi
