"""A fake HyperPod node for running the real lifecycle scripts with bash.

The scripts take every path through ``LIFECYCLE_ROOT``, so a temporary directory stands in
for ``/``: it holds the files a fresh Amazon Linux EKS node has (os-release, containerd
config, containerd and kubelet data, the kernel mount table). ``systemctl`` is the only
system binary the scripts call that would touch the machine; a small stub on PATH keeps
unit state in a file and records every call. Everything else (cp, awk, stat, ...) is the
real tool.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "lifecycle_scripts"
ON_CREATE = SCRIPTS_DIR / "on_create.sh"
LOG = "var/log/provision/provisioning.log"

# /etc/os-release as shipped by the two Amazon Linux images HyperPod EKS uses.
OS_RELEASE = {
    "al2": textwrap.dedent("""\
        NAME="Amazon Linux"
        VERSION="2"
        ID="amzn"
        ID_LIKE="centos rhel fedora"
        VERSION_ID="2"
        PRETTY_NAME="Amazon Linux 2"
        ANSI_COLOR="0;33"
        CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2"
        HOME_URL="https://amazonlinux.com/"
        SUPPORT_END="2026-06-30"
        """),
    "al2023": textwrap.dedent("""\
        NAME="Amazon Linux"
        VERSION="2023"
        ID="amzn"
        ID_LIKE="fedora"
        VERSION_ID="2023"
        PLATFORM_ID="platform:al2023"
        PRETTY_NAME="Amazon Linux 2023.6.20241010"
        ANSI_COLOR="0;33"
        CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2023"
        HOME_URL="https://aws.amazon.com/linux/amazon-linux-2023/"
        SUPPORT_END="2029-06-30"
        """),
    "ubuntu": textwrap.dedent("""\
        PRETTY_NAME="Ubuntu 22.04.4 LTS"
        NAME="Ubuntu"
        VERSION_ID="22.04"
        ID=ubuntu
        ID_LIKE=debian
        """),
}

# The EKS AL2 AMI's containerd config (awslabs/amazon-eks-ami, templates/al2), as bootstrap.sh
# installs it with the region's pause image filled in.
AL2_CONTAINERD_CONFIG = textwrap.dedent("""\
    version = 2
    root = "/var/lib/containerd"
    state = "/run/containerd"

    [grpc]
    address = "/run/containerd/containerd.sock"

    [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    discard_unpacked_layers = true

    [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/pause:3.5"

    [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = true

    [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    """)

# What nodeadm writes to /etc/containerd/config.toml on an AL2023 GPU node
# (nodeadm/internal/containerd/config.template.toml).
AL2023_NODEADM_CONFIG = textwrap.dedent("""\
    version = 2
    root = "/var/lib/containerd"
    state = "/run/containerd"

    [grpc]
    address = "/run/containerd/containerd.sock"

    [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "nvidia"
    discard_unpacked_layers = true

    [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "localhost/kubernetes/pause:0.1.0"
    enable_cdi = true

    [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]
    runtime_type = "io.containerd.runc.v2"
    base_runtime_spec = "/etc/containerd/base-runtime-spec.json"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]
    BinaryName = "/usr/bin/nvidia-container-runtime"
    SystemdCgroup = true

    [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    """)

# systemctl test double. Unit state lives in a file so that is-active answers consistently
# with earlier stop/start calls; exit status 3 for an inactive unit, like the real one.
SYSTEMCTL_STUB = textwrap.dedent("""\
    #!/bin/bash
    printf '%s\\n' "$*" >> "$FAKE_SYSTEMCTL_CALLS"
    unit=${*: -1}
    case $1 in
      is-active) grep -qx "$unit" "$FAKE_ACTIVE_UNITS" ;;
      stop) sed -i "/^${unit}\\$/d" "$FAKE_ACTIVE_UNITS" ;;
      start) grep -qx "$unit" "$FAKE_ACTIVE_UNITS" || printf '%s\\n' "$unit" >> "$FAKE_ACTIVE_UNITS" ;;
      daemon-reload) ;;
      *) echo "systemctl stub: unexpected call: $*" >&2; exit 1 ;;
    esac || exit 3
    """)


@dataclass
class FakeNode:
    """One fake node: a root directory, a bin directory with the systemctl stub, and state files."""

    base: Path
    volume_wait_seconds: int = 0
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def bin(self) -> Path:
        return self.base / "bin"

    def path(self, node_path: str) -> Path:
        """Where a node path (``/var/lib/kubelet``) lives inside the fake root."""
        return self.root / node_path.lstrip("/")

    def write(self, node_path: str, content: str, mode: int = 0o644) -> Path:
        target = self.path(node_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
        return target

    def mount(self, mount_point: str, device: str = "/dev/nvme1n1", fstype: str = "ext4") -> None:
        """Add a line to the kernel mount table the script reads, and create the mount point."""
        self.path(mount_point).mkdir(parents=True, exist_ok=True)
        with self.path("/proc/self/mounts").open("a") as table:
            table.write(f"{device} {mount_point} {fstype} rw,relatime 0 0\n")

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LIFECYCLE_ROOT": str(self.root),
            "FAILURE_SLEEP_SECONDS": "0",
            "VOLUME_WAIT_SECONDS": str(self.volume_wait_seconds),
            "VOLUME_POLL_SECONDS": "1",
            "FAKE_SYSTEMCTL_CALLS": str(self.base / "systemctl.calls"),
            "FAKE_ACTIVE_UNITS": str(self.base / "active.units"),
        }
        env.update(self.env_overrides)
        env.update(extra)
        return env

    def run(
        self, script: Path = ON_CREATE, *, shell: str = "bash", cwd: Path | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess:
        """Run the script the way HyperPod does: as a program, from the scripts folder."""
        return subprocess.run(
            [shell, str(script)],
            cwd=cwd or script.parent,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, **extra_env: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["bash", str(ON_CREATE)],
            cwd=SCRIPTS_DIR,
            env=self.env(**extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self) -> str:
        log = self.path(LOG)
        return log.read_text() if log.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in the log:\n{self.log()}")
            time.sleep(0.05)

    def systemctl_calls(self) -> list[str]:
        calls = self.base / "systemctl.calls"
        return calls.read_text().splitlines() if calls.exists() else []

    def active_units(self) -> set[str]:
        return set((self.base / "active.units").read_text().split())

    def snapshot(self) -> dict[str, tuple]:
        """Every path under the fake root (except /var/log, where the script logs) with its type,
        mode, content or link target, and mtime: equal snapshots mean nothing was created,
        changed, moved or rewritten."""
        result: dict[str, tuple] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                rel = str(path.relative_to(self.root))
                if rel == "var/log" or rel.startswith("var/log/"):
                    continue
                st = path.lstat()
                if path.is_symlink():
                    result[rel] = ("link", os.readlink(path))
                elif path.is_dir():
                    result[rel] = ("dir", oct(st.st_mode), st.st_mtime_ns)
                else:
                    result[rel] = ("file", oct(st.st_mode), path.read_bytes(), st.st_mtime_ns)
        return result


@pytest.fixture
def make_node(tmp_path):
    """Build a fresh node as HyperPod hands it to the lifecycle script.

    ``os_name``: al2 | al2023 | ubuntu. ``mounts``: secondary volumes already mounted.
    ``nvidia``: whether /usr/bin/nvidia-container-runtime exists. ``active``: units running.
    """
    counter = iter(range(1000))

    def build(
        os_name: str = "al2",
        *,
        mounts: tuple[str, ...] = ("/opt/sagemaker",),
        nvidia: bool = False,
        active: tuple[str, ...] = (),
    ) -> FakeNode:
        node = FakeNode(tmp_path / f"node{next(counter)}")
        node.bin.mkdir(parents=True)
        stub = node.bin / "systemctl"
        stub.write_text(SYSTEMCTL_STUB)
        stub.chmod(0o755)
        (node.base / "active.units").write_text("".join(f"{unit}\n" for unit in active))

        node.write("/etc/os-release", OS_RELEASE[os_name])
        node.write("/proc/self/mounts", "/dev/nvme0n1p1 / xfs rw,noatime 0 0\n")
        node.path("/var/log").mkdir(parents=True)
        for mount_point in mounts:
            node.mount(mount_point)
        # Directories HyperPod creates whether or not a volume gets mounted on them.
        node.path("/opt/sagemaker").mkdir(parents=True, exist_ok=True)

        if os_name == "al2":
            node.write("/etc/eks/containerd/containerd-config.toml", AL2_CONTAINERD_CONFIG)
            node.write("/etc/containerd/config.toml", AL2_CONTAINERD_CONFIG)
        elif os_name == "al2023":
            node.write("/etc/containerd/config.toml", AL2023_NODEADM_CONFIG)
            node.write("/etc/containerd/base-runtime-spec.json", '{"ociVersion": "1.1.0"}\n')
        if nvidia:
            node.write("/usr/bin/nvidia-container-runtime", "#!/bin/sh\nexit 0\n", mode=0o755)

        # containerd's store with the locally cached pause image, and kubelet state.
        node.write("/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/abc", "pause-layer")
        node.write("/var/lib/containerd/io.containerd.metadata.v1.bolt/meta.db", "bolt")
        node.write("/var/lib/kubelet/kubeconfig", "apiVersion: v1\nkind: Config\n", mode=0o600)
        node.write("/var/lib/kubelet/pki/kubelet.crt", "CERT")
        node.path("/var/lib/kubelet").chmod(0o750)
        return node

    return build
