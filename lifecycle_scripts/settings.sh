# shellcheck shell=bash
#
# Operator settings: defaults, and one clear error line for a bad value
# (before anything on the node is touched).

validate_settings() {
  VOLUME_CANDIDATES=${SECONDARY_VOLUME_CANDIDATES:-/opt/sagemaker /opt/dlami/nvme}
  VOLUME_WAIT_SECONDS=${VOLUME_WAIT_SECONDS:-300}
  VOLUME_POLL_SECONDS=${VOLUME_POLL_SECONDS:-5}

  require_whole_number VOLUME_WAIT_SECONDS "$VOLUME_WAIT_SECONDS" 0
  require_whole_number VOLUME_POLL_SECONDS "$VOLUME_POLL_SECONDS" 1
  require_whole_number FAILURE_SLEEP_SECONDS "${FAILURE_SLEEP_SECONDS:-60}" 0

  local candidate
  for candidate in $VOLUME_CANDIDATES; do
    [[ $candidate == /* ]] \
      || die "SECONDARY_VOLUME_CANDIDATES must list absolute mount points, got '$candidate'"
  done
  [[ -n ${VOLUME_CANDIDATES// /} ]] || die "SECONDARY_VOLUME_CANDIDATES is empty"
}

# require_whole_number NAME VALUE MIN
require_whole_number() {
  local name=$1 value=$2 min=$3
  if ! [[ $value =~ ^[0-9]+$ ]] || ((10#$value < min)); then
    die "$name must be a whole number of seconds >= $min, got '$value'"
  fi
}
