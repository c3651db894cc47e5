# shellcheck shell=bash
#
# Stopping and restarting the services whose data we move. Copying the data of
# a running daemon would copy a moving target, so whatever runs is stopped
# first and started again afterwards. Services that are not running yet are
# left alone: the node's bootstrap starts them later with the new settings.
# If a step fails in between, they stay stopped on purpose: the lifecycle
# script failed, so HyperPod does not put the node into service, and a daemon
# restarted on half-moved data would only hide the error.

# kubelet uses containerd, so it stops first and starts last.
MOVED_SERVICES=(kubelet containerd)
STOPPED_SERVICES=()

stop_active_services() {
  local unit
  for unit in "${MOVED_SERVICES[@]}"; do
    if systemctl is-active --quiet "$unit"; then
      log "stopping $unit while its data moves"
      systemctl stop "$unit"
      STOPPED_SERVICES+=("$unit")
    fi
  done
}

start_stopped_services() {
  local i
  # Reverse order of stopping. (Index loop: "${arr[@]}" of an empty array
  # trips `set -u` on the bash 4.2 of Amazon Linux 2.)
  for ((i = ${#STOPPED_SERVICES[@]} - 1; i >= 0; i--)); do
    log "starting ${STOPPED_SERVICES[i]} again"
    systemctl start "${STOPPED_SERVICES[i]}"
  done
}
