#!/usr/bin/env bash
# Creates a TPU VM: one host (v4-8, v5p-8, v5litepod-8, ...) or a pod slice (v5litepod-16, v5p-16, ...),
# directly or as a queued resource, on demand, spot or preemptible.
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
Usage: tpu/create.sh --name NAME --zone ZONE --accelerator-type TYPE [options]

Creates a TPU VM with `gcloud compute tpus tpu-vm create`, or with --queued as a queued resource
(`gcloud compute tpus queued-resources create`, the way to wait for capacity and to get spot
capacity reliably).

Required (or set the variable):
  --name NAME               TPU VM name                          (TPU_NAME)
  --zone ZONE               e.g. us-central2-b (v4), us-east5-a (v5p); see
                            `gcloud compute tpus accelerator-types list --zone=ZONE`   (TPU_ZONE)
  --accelerator-type TYPE   v4-8, v4-16, v5p-8, v5p-16, v5litepod-8, v5litepod-16, v6e-8, ...
                                                                 (TPU_ACCELERATOR_TYPE)
Options:
  --project PROJECT         Google Cloud project (default: gcloud's configured one)   (TPU_PROJECT)
  --runtime-version V       TPU software version (default from the type: tpu-ubuntu2204-base for
                            v2-v4, v2-alpha-tpuv5-lite for v5litepod, v2-alpha-tpuv5 for v5p,
                            v2-alpha-tpuv6e for v6e)                    (TPU_RUNTIME_VERSION)
  --spot                    Spot capacity: much cheaper, can be preempted at any time
  --preemptible             Preemptible (legacy; at most 24 h); not with --queued
  --reserved                Use reserved capacity
  --queued                  Create through a queued resource (waits in the TPU queue for capacity)
  --queued-resource-id ID   Name of the queued resource (default: the TPU name)
  --valid-until-duration D  With --queued: give up when not provisioned within D (e.g. 6h)
  --wait                    With --queued: poll until the queued resource is ACTIVE (or fails)
  --poll-seconds N          Seconds between polls with --wait (default 30)
  --scopes SCOPES           Service account scopes (default: cloud-platform, so that the VM can
                            read and write Cloud Storage as its service account allows)
  --service-account EMAIL   Service account of the VM (default: Compute Engine's default)
  --network NET             VPC network (default: default)
  --subnetwork SUBNET
  --labels K=V,...
  --gcloud-flag FLAG        Any further flag for the gcloud create command (repeatable),
                            e.g. --gcloud-flag=--internal-ips
  --dry-run                 Print the gcloud commands instead of running them
  -h, --help                This help

Examples:
  tpu/create.sh --name dsc --zone us-east5-a --accelerator-type v5p-8
  tpu/create.sh --name dsc --zone us-central2-b --accelerator-type v4-8 --spot --queued --wait
EOF
}

ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE:-}
RUNTIME_VERSION=${TPU_RUNTIME_VERSION:-}
SPOT=0 PREEMPTIBLE=0 RESERVED=0 QUEUED=0 WAIT=0 POLL_SECONDS=30
QUEUED_RESOURCE_ID="" VALID_UNTIL="" SERVICE_ACCOUNT="" NETWORK="" SUBNETWORK="" LABELS=""
SCOPES=https://www.googleapis.com/auth/cloud-platform
EXTRA_FLAGS=()

split_equals "$@"
set -- ${ARGS[@]+"${ARGS[@]}"}
while (($#)); do
    case $1 in
        --accelerator-type) need_value "$@"; ACCELERATOR_TYPE=$2; shift 2 ;;
        --runtime-version) need_value "$@"; RUNTIME_VERSION=$2; shift 2 ;;
        --spot) SPOT=1; shift ;;
        --preemptible) PREEMPTIBLE=1; shift ;;
        --reserved) RESERVED=1; shift ;;
        --queued) QUEUED=1; shift ;;
        --queued-resource-id) need_value "$@"; QUEUED_RESOURCE_ID=$2; shift 2 ;;
        --valid-until-duration) need_value "$@"; VALID_UNTIL=$2; shift 2 ;;
        --wait) WAIT=1; shift ;;
        --poll-seconds) need_value "$@"; POLL_SECONDS=$2; shift 2 ;;
        --scopes) need_value "$@"; SCOPES=$2; shift 2 ;;
        --service-account) need_value "$@"; SERVICE_ACCOUNT=$2; shift 2 ;;
        --network) need_value "$@"; NETWORK=$2; shift 2 ;;
        --subnetwork) need_value "$@"; SUBNETWORK=$2; shift 2 ;;
        --labels) need_value "$@"; LABELS=$2; shift 2 ;;
        --gcloud-flag)
            (($# >= 2)) && [[ $2 == --* ]] || die "--gcloud-flag needs a value such as --gcloud-flag=--internal-ips"
            EXTRA_FLAGS+=("$2"); shift 2 ;;
        *) common_option "$@"; shift "$SHIFT" ;;
    esac
done

require_tpu
require "$ACCELERATOR_TYPE" --accelerator-type TPU_ACCELERATOR_TYPE
require_int --poll-seconds "$POLL_SECONDS"
if [[ -z $RUNTIME_VERSION ]]; then
    case $ACCELERATOR_TYPE in
        v2-* | v3-* | v4-*) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
        v5litepod-*) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
        v5p-*) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
        v6e-*) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
        *) die "no default runtime version for accelerator type '$ACCELERATOR_TYPE': pass --runtime-version" ;;
    esac
fi
((SPOT + PREEMPTIBLE <= 1)) || die "--spot and --preemptible exclude each other"
if ((QUEUED)); then
    ((PREEMPTIBLE == 0)) || die "--preemptible is not offered for queued resources: use --spot"
else
    [[ -z $QUEUED_RESOURCE_ID && -z $VALID_UNTIL ]] || die "--queued-resource-id and --valid-until-duration need --queued"
    ((WAIT == 0)) || die "--wait needs --queued (a direct create already waits until the VM is up)"
fi
QUEUED_RESOURCE_ID=${QUEUED_RESOURCE_ID:-$TPU_NAME}

location_flags
FLAGS=(--accelerator-type="$ACCELERATOR_TYPE")
((SPOT)) && FLAGS+=(--spot)
((PREEMPTIBLE)) && FLAGS+=(--preemptible)
((RESERVED)) && FLAGS+=(--reserved)
FLAGS+=(--scopes="$SCOPES")
[[ -n $SERVICE_ACCOUNT ]] && FLAGS+=(--service-account="$SERVICE_ACCOUNT")
[[ -n $NETWORK ]] && FLAGS+=(--network="$NETWORK")
[[ -n $SUBNETWORK ]] && FLAGS+=(--subnetwork="$SUBNETWORK")
[[ -n $LABELS ]] && FLAGS+=(--labels="$LABELS")
FLAGS+=(${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"})

if ((QUEUED)); then
    [[ -n $VALID_UNTIL ]] && FLAGS+=(--valid-until-duration="$VALID_UNTIL")
    run gcloud compute tpus queued-resources create "$QUEUED_RESOURCE_ID" "${LOCATION[@]}" \
        --node-id="$TPU_NAME" --runtime-version="$RUNTIME_VERSION" "${FLAGS[@]}"
    if ((WAIT)); then
        describe=(gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE_ID" "${LOCATION[@]}"
            --format='value(state.state)')
        if [[ $DRY_RUN == 1 ]]; then
            run "${describe[@]}"
        else
            while true; do
                state=$("${describe[@]}")
                note "queued resource $QUEUED_RESOURCE_ID: $state"
                case $state in
                    ACTIVE) break ;;
                    FAILED | SUSPENDING | SUSPENDED)
                        die "queued resource $QUEUED_RESOURCE_ID is $state; see $(quote_words "${describe[@]:0:7}")" ;;
                esac
                sleep "$POLL_SECONDS"
            done
        fi
    else
        note "queued: follow it with: gcloud compute tpus queued-resources describe $QUEUED_RESOURCE_ID ${LOCATION[*]}"
    fi
else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" --version="$RUNTIME_VERSION" "${FLAGS[@]}"
fi
note "next: tpu/setup.sh --name $TPU_NAME --zone $TPU_ZONE (installs the project on every worker)"
