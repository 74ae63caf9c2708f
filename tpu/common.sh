# shellcheck shell=bash disable=SC2034
# Helpers shared by the tpu/*.sh scripts (sourced, never run): messages, shell quoting, the `run`
# wrapper behind --dry-run, option parsing, and the gcloud calls every script makes.
#
# Written for bash 3.2 as well (the one macOS ships): no associative arrays, no ${x,,}, and empty
# arrays are expanded as ${a[@]+"${a[@]}"} because `set -u` rejects "${a[@]}" there.

PROG=$(basename "$0")
TPU_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$TPU_SCRIPTS_DIR/.." && pwd)

# Defaults from the environment; the options override them.
TPU_NAME=${TPU_NAME:-}
TPU_ZONE=${TPU_ZONE:-}
TPU_PROJECT=${TPU_PROJECT:-}
# Where the checkout lives on every worker, relative to the home directory (or absolute).
TPU_REMOTE_DIR=${TPU_REMOTE_DIR:-clarify_jax}
DRY_RUN=${TPU_DRY_RUN:-0}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 2
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

# One word quoted for bash, as Python's shlex.quote does: left bare when it is only safe characters,
# otherwise in single quotes (a ' inside becomes '"'"').
quote() {
    local word=$1 sq="'" escaped="'\"'\"'"
    if [[ -n $word && $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
        printf '%s' "$word"
    else
        printf "'%s'" "${word//$sq/$escaped}"
    fi
}

# All arguments quoted and joined by spaces: a command line that bash parses back into these words.
quote_words() {
    local line="" word
    for word in "$@"; do
        line+="${line:+ }$(quote "$word")"
    done
    printf '%s' "$line"
}

# Runs a command, or with --dry-run prints it (one line, quoted so that it can be pasted).
# Outside dry runs the command is echoed to stderr first, so stdout stays the command's own.
run() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '%s\n' "$(quote_words "$@")"
    else
        printf '+ %s\n' "$(quote_words "$@")" >&2
        "$@"
    fi
}

# --opt=value becomes --opt value (up to a lone --); the result is left in ARGS.
ARGS=()
split_equals() {
    ARGS=()
    while (($#)); do
        case $1 in
            --) ARGS+=("$@"); return ;;
            --*=*) ARGS+=("${1%%=*}" "${1#*=}") ;;
            *) ARGS+=("$1") ;;
        esac
        shift
    done
}

# need_value "$@": the option in $1 has a value in $2.
need_value() {
    if (($# < 2)) || [[ -z $2 || $2 == --* ]]; then
        die "$1 needs a value (see --help)"
    fi
}

# The options every script takes. Sets SHIFT to the number of words used; unknown options and
# stray words are errors.
SHIFT=1
common_option() {
    SHIFT=1
    case $1 in
        --name) need_value "$@"; TPU_NAME=$2; SHIFT=2 ;;
        --zone) need_value "$@"; TPU_ZONE=$2; SHIFT=2 ;;
        --project) need_value "$@"; TPU_PROJECT=$2; SHIFT=2 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) die "unexpected argument '$1' (see --help)" ;;
    esac
}

# The options of the scripts that act on the checkout on the workers (--worker, --remote-dir),
# then those of every script.
worker_option() {
    SHIFT=2
    case $1 in
        --worker) need_value "$@"; WORKER=$2 ;;
        --remote-dir) need_value "$@"; TPU_REMOTE_DIR=$2 ;;
        *) common_option "$@" ;;
    esac
}

# require VALUE OPTION [ENV_VAR]: a clear error when a required setting is empty.
require() {
    if [[ -z $1 ]]; then
        if [[ -n ${3:-} ]]; then
            die "missing $2 (or set $3); see --help"
        fi
        die "missing $2; see --help"
    fi
}

require_tpu() {
    require "$TPU_NAME" --name TPU_NAME
    require "$TPU_ZONE" --zone TPU_ZONE
}

require_int() {
    [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a whole number of seconds or lines, got '$2'"
}

# --worker takes all, one index, or a comma-separated list of indices (as gcloud does).
require_worker() {
    [[ $1 == all || $1 =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--worker must be all, N or N,M,..., got '$1'"
}

# Zone and project flags of every gcloud TPU command (no --project: gcloud's configured default).
location_flags() {
    LOCATION=(--zone="$TPU_ZONE")
    if [[ -n $TPU_PROJECT ]]; then
        LOCATION+=(--project="$TPU_PROJECT")
    fi
}

# tpu_ssh WORKER COMMAND: COMMAND (one string, run by the login shell, bash on TPU VMs) on the
# workers named by WORKER (all, N or N,M).
tpu_ssh() {
    location_flags
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker="$1" --command="$2"
}

# tpu_scp WORKER SOURCE DEST: gcloud's scp; remote paths are NAME:PATH.
tpu_scp() {
    location_flags
    run gcloud compute tpus tpu-vm scp "$2" "$3" "${LOCATION[@]}" --worker="$1"
}

# The checkout directory on the workers, quoted for their shell: a relative path is under $HOME
# (ssh starts there), so it is left relative.
# (ssh starts there), so it is left relative. Plain characters only: it goes into remote scripts.
remote_dir() {
    remote_path --remote-dir "$TPU_REMOTE_DIR"
}

# remote_path OPTION PATH: PATH checked for plain characters (letters, digits, _ . / -), no ~.
remote_path() {
    [[ $2 =~ ^[A-Za-z0-9_./-]+$ ]] \
        || die "$1 takes letters, digits and _ . / - only, relative to the home directory or absolute (got '$2')"
    printf '%s' "$2"
}
