# shellcheck shell=bash
#
# Pointing containerd at the secondary volume.
#
# Amazon Linux 2: bootstrap.sh copies /etc/eks/containerd/containerd-config.toml
#   to /etc/containerd/config.toml, so we set `root = ...` in both (whichever
#   exist): the change then holds whether or not bootstrap already ran.
# Amazon Linux 2023: nodeadm rewrites /etc/containerd/config.toml at every
#   boot, so editing it is pointless. We write our own full config next to it
#   and a systemd drop-in that starts containerd with that file.
#
# Either way the existing data is copied first: AL2023 AMIs ship the pause
# image only in the local store (localhost/kubernetes/pause, not pullable),
# so a containerd on an empty root can never start a pod.

CONTAINERD_DATA=/var/lib/containerd
AL2_CONFIGS=(/etc/eks/containerd/containerd-config.toml /etc/containerd/config.toml)
NODEADM_CONFIG=/etc/containerd/config.toml
AL2023_CONFIG=/etc/containerd/config-secondary-volume.toml
# 99- so it sorts after every other drop-in: the last ExecStart= wins.
AL2023_DROP_IN=/etc/systemd/system/containerd.service.d/99-secondary-volume.conf
NVIDIA_RUNTIME=/usr/bin/nvidia-container-runtime
RUNC_RUNTIME=/usr/sbin/runc
BASE_RUNTIME_SPEC=/etc/containerd/base-runtime-spec.json
# What nodeadm configures when it cannot tell us otherwise.
DEFAULT_SANDBOX_IMAGE=localhost/kubernetes/pause

# containerd_root VOLUME: containerd's data directory as the node sees it.
containerd_root() {
  printf '%s/containerd/data-root' "$1"
}

# containerd_uses_volume FLAVOR VOLUME: true when containerd already keeps its
# data on VOLUME: the data directory exists and the config containerd starts
# with names it. The config is switched only after the copy finished, so this
# means the data is complete and live: it must never be copied over again.
# (The configs live on the root disk; a new root disk means a fresh copy.)
containerd_uses_volume() {
  local flavor=$1 volume=$2
  [[ -d "$ROOT$(containerd_root "$volume")" ]] || return 1
  case $flavor in
    al2) al2_configs_point_at "$volume" ;;
    al2023) al2023_points_at "$volume" ;;
    *) return 1 ;;
  esac
}

# containerd_on_volume FLAVOR VOLUME: true when there is nothing left to do,
# including refreshing an AL2023 config whose inputs changed since it was
# written (an NVIDIA runtime installed later, a new pause image).
containerd_on_volume() {
  local flavor=$1 volume=$2
  containerd_uses_volume "$flavor" "$volume" || return 1
  if [[ $flavor == al2023 ]]; then
    file_has_content "$ROOT$AL2023_CONFIG" "$(al2023_config "$volume")" || return 1
  fi
}

move_containerd() {
  local flavor=$1 volume=$2
  if containerd_on_volume "$flavor" "$volume"; then
    log "containerd already keeps its data on $volume"
    return 0
  fi
  if [[ $flavor == al2 ]] && ! al2_has_config; then
    die "no containerd config found (looked for: ${AL2_CONFIGS[*]})"
  fi
  if containerd_uses_volume "$flavor" "$volume"; then
    log "containerd data already on $volume; only refreshing its config"
  else
    copy_dir_fresh "$ROOT$CONTAINERD_DATA" "$ROOT$(containerd_root "$volume")"
  fi
  case $flavor in
    al2) configure_al2 "$volume" ;;
    al2023) configure_al2023 "$volume" ;;
  esac
  log "containerd data root is now $(containerd_root "$volume")"
}

# --- Amazon Linux 2 -----------------------------------------------------------

al2_has_config() {
  local file
  for file in "${AL2_CONFIGS[@]}"; do
    [[ -f "$ROOT$file" ]] && return 0
  done
  return 1
}

# al2_config_with_root FILE DATA_ROOT: FILE with its top-level `root = ...`
# set to DATA_ROOT. In TOML only the lines before the first [table] are top
# level (a `root` key inside a table would be a different setting). A
# commented-out root line is replaced too; with no root line at all, one is
# added before the first table.
al2_config_with_root() {
  awk -v wanted="root = \"$2\"" '
    !done && /^[[:space:]#]*root[[:space:]]*=/ { print wanted; done = 1; next }
    !done && /^[[:space:]]*\[/ { print wanted; done = 1 }
    { print }
    END { if (!done) print wanted }
  ' "$1"
}

al2_configs_point_at() {
  local volume=$1 file
  al2_has_config || return 1
  for file in "${AL2_CONFIGS[@]}"; do
    [[ -f "$ROOT$file" ]] || continue
    [[ "$(al2_config_with_root "$ROOT$file" "$(containerd_root "$volume")")" == "$(< "$ROOT$file")" ]] || return 1
  done
}

configure_al2() {
  local volume=$1 file content mode
  for file in "${AL2_CONFIGS[@]}"; do
    [[ -f "$ROOT$file" ]] || continue
    content=$(al2_config_with_root "$ROOT$file" "$(containerd_root "$volume")")
    if ! file_has_content "$ROOT$file" "$content"; then
      mode=$(stat -c %a -- "$ROOT$file")
      write_file "$ROOT$file" "$mode" "$content"
    fi
  done
}

# --- Amazon Linux 2023 --------------------------------------------------------

# The pause image nodeadm chose, read from the config it wrote (version 2
# `sandbox_image` or version 3 `sandbox`), so ours uses the same image.
current_sandbox_image() {
  local file="$ROOT$NODEADM_CONFIG" line value=""
  local pattern='^[[:space:]]*(sandbox_image|sandbox)[[:space:]]*=[[:space:]]*(.*)$'
  if [[ -f $file ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
      if [[ $line =~ $pattern ]]; then
        value=${BASH_REMATCH[2]}
        value=${value//[\"\' ]/}
      fi
    done < "$file"
  fi
  printf '%s' "${value:-$DEFAULT_SANDBOX_IMAGE}"
}

# al2023_config VOLUME: the full containerd config, modelled on the one nodeadm
# writes. The NVIDIA runtime becomes the default (and CDI is enabled, which
# the NVIDIA device plugin can use) only when the node actually has it:
# naming a missing runtime would break every container.
al2023_config() {
  local volume=$1 runtime=runc binary=$RUNC_RUNTIME cdi=false spec_line="" sandbox
  if [[ -x "$ROOT$NVIDIA_RUNTIME" ]]; then
    runtime=nvidia binary=$NVIDIA_RUNTIME cdi=true
  fi
  # Only reference the base spec when it exists: containerd fails on a missing one.
  if [[ -f "$ROOT$BASE_RUNTIME_SPEC" ]]; then
    spec_line="base_runtime_spec = \"$BASE_RUNTIME_SPEC\""
  fi
  sandbox=$(current_sandbox_image)
  cat <<TOML
# Written by the HyperPod lifecycle script (on_create.sh). containerd starts
# with this file (see $AL2023_DROP_IN), not with the one nodeadm writes,
# so that its data lives on the secondary volume.
version = 2
root = "$(containerd_root "$volume")"
state = "/run/containerd"

[grpc]
address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "$sandbox"
enable_cdi = $cdi

[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "$runtime"
discard_unpacked_layers = true

[plugins."io.containerd.grpc.v1.cri".registry]
config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$runtime]
runtime_type = "io.containerd.runc.v2"
$spec_line

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$runtime.options]
BinaryName = "$binary"
SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/opt/cni/bin"
conf_dir = "/etc/cni/net.d"
TOML
}

# al2023_points_at VOLUME: containerd starts with our config (drop-in in place)
# and that config's root is on VOLUME.
al2023_points_at() {
  local volume=$1
  file_has_content "$ROOT$AL2023_DROP_IN" "$(al2023_drop_in)" \
    && [[ -f "$ROOT$AL2023_CONFIG" ]] \
    && grep -qxF "root = \"$(containerd_root "$volume")\"" "$ROOT$AL2023_CONFIG"
}

al2023_drop_in() {
  cat <<UNIT
# Written by the HyperPod lifecycle script (on_create.sh): run containerd with
# the config that keeps its data on the secondary volume.
[Service]
ExecStart=
ExecStart=/usr/bin/containerd --config $AL2023_CONFIG
UNIT
}

configure_al2023() {
  local volume=$1 config drop_in
  config=$(al2023_config "$volume")
  drop_in=$(al2023_drop_in)
  if ! file_has_content "$ROOT$AL2023_CONFIG" "$config"; then
    write_file "$ROOT$AL2023_CONFIG" 644 "$config"
  fi
  if ! file_has_content "$ROOT$AL2023_DROP_IN" "$drop_in"; then
    write_file "$ROOT$AL2023_DROP_IN" 644 "$drop_in"
    # systemd only sees a new drop-in after a reload.
    systemctl daemon-reload
  fi
}
