# shellcheck shell=bash
#
# Moving /var/lib/kubelet (pod volumes, emptyDirs, plugin state) onto the
# secondary volume. /var/lib/kubelet becomes a symlink to VOLUME/kubelet, as in
# the HyperPod reference scripts: unlike a bind mount it needs no fstab entry
# and survives reboots by itself.

KUBELET_DIR=/var/lib/kubelet

kubelet_on_volume() {
  local volume=$1 link="$ROOT$KUBELET_DIR"
  [[ -L $link && -d $link && "$(readlink -- "$link")" == "$ROOT$volume/kubelet" ]]
}

move_kubelet() {
  local volume=$1
  local dir="$ROOT$KUBELET_DIR" target="$ROOT$volume/kubelet"
  if kubelet_on_volume "$volume"; then
    log "$KUBELET_DIR already points at $volume/kubelet"
    return 0
  fi
  # rm -rf below would also delete whatever is mounted inside (pod volumes).
  if has_mounts_below "$KUBELET_DIR"; then
    die "refusing to move $KUBELET_DIR: something is mounted inside it (see /proc/self/mounts)"
  fi
  # Copy first, switch last: if this stops half-way, $KUBELET_DIR is still
  # the real directory and a re-run starts the copy again from it.
  copy_dir_fresh "$dir" "$target"
  rm -rf -- "$dir"
  ln -s -- "$target" "$dir"
  log "$KUBELET_DIR now points at $volume/kubelet"
}
