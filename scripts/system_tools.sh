#!/usr/bin/env bash
# SkyPilot's Kubernetes support shells out to socat, nc and rsync (port-forwarding, file mounts), and the
# post-deploy tests run real SkyPilot. Install whichever is missing when this machine allows it (root with
# apt-get, or passwordless sudo); otherwise stop at once with the one command to run.
set -euo pipefail

packages=()
command -v socat >/dev/null 2>&1 || packages+=(socat)
command -v nc >/dev/null 2>&1 || packages+=(netcat-openbsd)
command -v rsync >/dev/null 2>&1 || packages+=(rsync)
[ ${#packages[@]} -eq 0 ] && exit 0

install_cmd="apt-get install -y ${packages[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system tools: ${packages[*]} missing and no apt-get here; install socat, nc and rsync with your OS's package manager, then rerun" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  run=(sudo -n)
else
  echo "system tools: ${packages[*]} missing; run: sudo apt-get update && sudo $install_cmd" >&2
  exit 1
fi
echo "system tools: installing ${packages[*]} (SkyPilot's Kubernetes support needs them)" >&2
"${run[@]}" apt-get update -qq
"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
