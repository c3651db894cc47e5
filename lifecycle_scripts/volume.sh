# shellcheck shell=bash
#
# Finding the secondary volume. HyperPod mounts it at /opt/sagemaker (the EBS
# volume from InstanceStorageConfigs) or, on instances with NVMe instance
# store, at /opt/dlami/nvme. The mount can land a little after the script
# starts, so wait for it, but not forever. A group without EBS volumes on a type
# without instance storage gets no secondary volume at all: then the node keeps
# its data on the root disk and provisioning goes on, as AWS's own lifecycle
# scripts do.

# is_mounted DIR: true when DIR is a mount point in the kernel's mount table.
# (Reading the table directly also avoids the substring false positives of
# `mount | grep DIR`.)
is_mounted() {
  local dir=$1 _device mount_point _rest
  while read -r _device mount_point _rest; do
    [[ $mount_point == "$dir" ]] && return 0
  done < "$ROOT/proc/self/mounts"
  return 1
}

# has_mounts_below DIR: true when anything is mounted strictly inside DIR.
has_mounts_below() {
  local dir=$1 _device mount_point _rest
  while read -r _device mount_point _rest; do
    [[ $mount_point == "$dir"/* ]] && return 0
  done < "$ROOT/proc/self/mounts"
  return 1
}

# first_mounted_candidate: sets VOLUME to the first mounted candidate.
first_mounted_candidate() {
  local candidate
  for candidate in $VOLUME_CANDIDATES; do
    if is_mounted "$candidate"; then
      # shellcheck disable=SC2034  # VOLUME is read by on_create.sh, which sources this file
      VOLUME=$candidate
      return 0
    fi
  done
  return 1
}

# wait_for_volume: sets VOLUME and succeeds, or logs and returns 1 when none is
# mounted within VOLUME_WAIT_SECONDS.
wait_for_volume() {
  local deadline=$((SECONDS + 10#$VOLUME_WAIT_SECONDS))
  [[ -r "$ROOT/proc/self/mounts" ]] || die "cannot read $ROOT/proc/self/mounts"
  until first_mounted_candidate; do
    if ((SECONDS >= deadline)); then
      log "[warning] no secondary volume mounted at any of: $VOLUME_CANDIDATES (waited ${VOLUME_WAIT_SECONDS}s)"
      return 1
    fi
    log "waiting for a secondary volume at: $VOLUME_CANDIDATES"
    sleep "$VOLUME_POLL_SECONDS"
  done
}
