#!/bin/bash
#
# HyperPod lifecycle script (EKS orchestrator), run once as root on every node
# when HyperPod creates it.
#
# Why it exists: the root disk of a HyperPod node is small, while container
# images and pod data grow large. HyperPod mounts a secondary volume
# (/opt/sagemaker, or /opt/dlami/nvme on instances with NVMe instance store);
# this script moves containerd's data and /var/lib/kubelet onto it before the
# node starts running pods.
#
# Steps: detect Amazon Linux 2 or 2023 -> wait for the volume (none within
# the wait: log it and leave everything on the root disk) -> stop
# containerd/kubelet if they already run -> copy their data onto the volume and
# point them at it -> start again whatever was running.
#
# Safe to re-run: every step first checks whether its work is already done.
# On failure the script logs the error, waits so the CloudWatch agent can ship
# the log (the node may be torn down right after), and exits non-zero.
#
# Everything goes to /var/log/provision/provisioning.log and to stdout.
#
# The helpers below sit next to this file and are sourced from the script's own
# folder, so upload the WHOLE folder to S3, not only on_create.sh.
#
# Settings (environment variables, all optional):
#   SECONDARY_VOLUME_CANDIDATES  mount points to try, in order of preference
#                                (default "/opt/sagemaker /opt/dlami/nvme")
#   VOLUME_WAIT_SECONDS          how long to wait for the volume (default 300)
#   VOLUME_POLL_SECONDS          pause between checks (default 5)
#   FAILURE_SLEEP_SECONDS        wait before exiting on failure (default 60)
#   LIFECYCLE_ROOT               prefix for every path the script touches; only
#                                the tests set it, to run against a fake root

# Started with `sh on_create.sh`? Re-run under bash (plain sh would choke on
# the options below). This line is plain POSIX sh on purpose.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi

set -Eeuo pipefail

ROOT=${LIFECYCLE_ROOT:-}
ROOT=${ROOT%/}
LOG_FILE="$ROOT/var/log/provision/provisioning.log"
SCRIPT_NAME=on_create.sh
DEFAULT_FAILURE_SLEEP_SECONDS=60

log() {
  printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*"
}

die() {
  log "[error] $*"
  exit 1
}

# Called by the ERR trap: names the command that failed and where, so the log
# alone is enough to find the cause.
on_error() {
  local status=$1 line=$2 file=$3 command=$4
  log "[error] command failed with exit status $status at $file:$line: $command"
}

# Sources one helper from this script's folder. A missing helper is the classic
# deploy bug (only on_create.sh uploaded), so say exactly that.
load_helper() {
  local helper="$SCRIPT_DIR/$1"
  [[ -r "$helper" ]] || die "helper $1 not found in $SCRIPT_DIR: upload the whole lifecycle_scripts folder, not only $SCRIPT_NAME"
  # shellcheck source=/dev/null  # the name is a parameter; each helper is linted on its own
  source "$helper"
}

# The real work. Runs in the left half of a pipeline whose right half writes
# the log, so every line (ours and the commands') reaches both file and stdout.
provision() {
  trap 'on_error "$?" "$LINENO" "${BASH_SOURCE[0]##*/}" "$BASH_COMMAND"' ERR
  log "[start] $SCRIPT_NAME from $SCRIPT_DIR"

  load_helper settings.sh
  load_helper files.sh
  load_helper os_release.sh
  load_helper volume.sh
  load_helper services.sh
  load_helper containerd.sh
  load_helper kubelet.sh

  validate_settings
  detect_os
  if ! wait_for_volume; then
    log "containerd and kubelet keep their data on the root disk (OS: $OS_FLAVOR)"
  else
    log "secondary volume: $VOLUME, OS: $OS_FLAVOR"
    if containerd_on_volume "$OS_FLAVOR" "$VOLUME" && kubelet_on_volume "$VOLUME"; then
      log "containerd and kubelet already keep their data on $VOLUME; nothing to change"
    else
      stop_active_services
      move_containerd "$OS_FLAVOR" "$VOLUME"
      move_kubelet "$VOLUME"
      start_stopped_services
    fi
  fi
  log "[stop] $SCRIPT_NAME: success"
}

# Writes one line to stdout and the log file from outside the pipeline.
log_outside_pipeline() {
  # Failing to append to the log must not skip the failure wait below: the
  # line still reaches stdout, which HyperPod captures too.
  log "$@" | tee -a "$LOG_FILE" || true
}

# EXIT trap of the outer shell: on failure, give the CloudWatch agent time to
# ship the log before HyperPod tears the node down.
finish() {
  local status=$?
  local wait_s=${FAILURE_SLEEP_SECONDS:-$DEFAULT_FAILURE_SLEEP_SECONDS}
  [[ $wait_s =~ ^[0-9]+$ ]] || wait_s=$DEFAULT_FAILURE_SLEEP_SECONDS
  if ((status != 0)); then
    log_outside_pipeline "[error] $SCRIPT_NAME failed (exit status $status); waiting ${wait_s}s so the log reaches CloudWatch"
    sync
    sleep "$wait_s"
    log_outside_pipeline "[stop] $SCRIPT_NAME: failed"
  fi
  sync
  exit "$status"
}

main() {
  trap finish EXIT
  SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
  mkdir -p -- "${LOG_FILE%/*}"
  provision 2>&1 | tee -a "$LOG_FILE"
}

main "$@"
