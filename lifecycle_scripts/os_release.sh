# shellcheck shell=bash
#
# Which Amazon Linux is this? The containerd setup differs: AL2 keeps a plain
# config file we can edit, AL2023's nodeadm regenerates it at every boot.

# os_release_value KEY: the value of KEY in /etc/os-release, quotes removed.
# The file is parsed, not sourced, so nothing in it is executed.
os_release_value() {
  local key=$1 line value=""
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line == "$key="* ]]; then
      value=${line#*=}
      value=${value#[\"\']}
      value=${value%[\"\']}
    fi
  done < "$ROOT/etc/os-release"
  printf '%s' "$value"
}

# detect_os: sets OS_FLAVOR to al2 or al2023; anything else is an error, since
# a half-applied containerd setup is worse than a node that fails loudly.
detect_os() {
  local file="$ROOT/etc/os-release" id version
  [[ -r $file ]] || die "cannot read $file to tell Amazon Linux 2 from 2023"
  id=$(os_release_value ID)
  version=$(os_release_value VERSION_ID)
  # shellcheck disable=SC2034  # OS_FLAVOR is read by on_create.sh, which sources this file
  case "$id:$version" in
    amzn:2) OS_FLAVOR=al2 ;;
    amzn:2023) OS_FLAVOR=al2023 ;;
    *) die "unsupported OS in /etc/os-release: ID='$id' VERSION_ID='$version' (expected Amazon Linux 2 or 2023)" ;;
  esac
}
