"""on_create.sh, run for real with bash against a fake node root (see conftest.py)."""

from __future__ import annotations

import os
import shutil
import time
import tomllib

import pytest

from tests.lifecycle_scripts.fake_node import AL2_CONTAINERD_CONFIG, AL2023_NODEADM_CONFIG, ON_CREATE, SCRIPTS_DIR

AL2_CONFIGS = ("/etc/eks/containerd/containerd-config.toml", "/etc/containerd/config.toml")
AL2023_CONFIG = "/etc/containerd/config-secondary-volume.toml"
AL2023_DROP_IN = "/etc/systemd/system/containerd.service.d/99-secondary-volume.conf"
CRI = 'plugins."io.containerd.grpc.v1.cri"'


def _ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _failed(result):
    assert result.returncode != 0, f"expected failure\nstdout:\n{result.stdout}"
    return result


def _cri(config: dict) -> dict:
    return config["plugins"]["io.containerd.grpc.v1.cri"]


def _assert_kubelet_on(node, volume: str) -> None:
    link = node.path("/var/lib/kubelet")
    assert link.is_symlink()
    assert os.readlink(link) == str(node.path(f"{volume}/kubelet"))
    # Data reachable through the old path and stored on the volume.
    assert (link / "kubeconfig").read_text() == "apiVersion: v1\nkind: Config\n"
    assert node.path(f"{volume}/kubelet/pki/kubelet.crt").read_text() == "CERT"


def _assert_containerd_data_on(node, volume: str) -> None:
    data = node.path(f"{volume}/containerd/data-root")
    assert (data / "io.containerd.content.v1.content/blobs/sha256/abc").read_text() == "pause-layer"
    assert (data / "io.containerd.metadata.v1.bolt/meta.db").read_text() == "bolt"
    assert not node.path(f"{volume}/containerd/data-root.partial").exists()


# --- success paths ----------------------------------------------------------------------------


def test_al2_sets_containerd_root_on_the_volume_in_both_configs_and_links_kubelet(make_node):
    node = make_node("al2")
    result = _ok(node.run())

    for config_path in AL2_CONFIGS:
        text = node.path(config_path).read_text()
        assert tomllib.loads(text)["root"] == "/opt/sagemaker/containerd/data-root"
        # Only the root line changed; the rest of the AMI's config is kept as it was.
        changed = [
            (a, b) for a, b in zip(AL2_CONTAINERD_CONFIG.splitlines(), text.splitlines(), strict=False) if a != b
        ]
        assert changed == [('root = "/var/lib/containerd"', 'root = "/opt/sagemaker/containerd/data-root"')]
        assert len(text.splitlines()) == len(AL2_CONTAINERD_CONFIG.splitlines())
    _assert_containerd_data_on(node, "/opt/sagemaker")
    _assert_kubelet_on(node, "/opt/sagemaker")
    # AL2 needs no new unit file, and nothing was running: no reload, no restart.
    assert node.systemctl_calls() == ["is-active --quiet kubelet", "is-active --quiet containerd"]
    assert not node.path(AL2023_DROP_IN).exists()
    assert "[stop] on_create.sh: success" in node.log()
    assert "[stop] on_create.sh: success" in result.stdout


def test_al2023_gpu_node_gets_full_config_with_nvidia_default_runtime_and_cdi(make_node):
    node = make_node("al2023", nvidia=True)
    _ok(node.run())

    config = tomllib.loads(node.path(AL2023_CONFIG).read_text())
    assert config["root"] == "/opt/sagemaker/containerd/data-root"
    assert config["state"] == "/run/containerd"
    assert config["grpc"]["address"] == "/run/containerd/containerd.sock"
    cri = _cri(config)
    assert cri["enable_cdi"] is True
    assert cri["containerd"]["default_runtime_name"] == "nvidia"
    nvidia = cri["containerd"]["runtimes"]["nvidia"]
    assert nvidia["runtime_type"] == "io.containerd.runc.v2"
    assert nvidia["options"] == {"BinaryName": "/usr/bin/nvidia-container-runtime", "SystemdCgroup": True}
    assert nvidia["base_runtime_spec"] == "/etc/containerd/base-runtime-spec.json"
    assert set(cri["containerd"]["runtimes"]) == {"nvidia"}
    # Same pause image as nodeadm chose: it only exists in the local store.
    assert cri["sandbox_image"] == "localhost/kubernetes/pause:0.1.0"
    assert cri["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}

    drop_in = node.path(AL2023_DROP_IN).read_text()
    exec_starts = [line for line in drop_in.splitlines() if line.startswith("ExecStart=")]
    assert exec_starts == ["ExecStart=", f"ExecStart=/usr/bin/containerd --config {AL2023_CONFIG}"]
    assert "[Service]" in drop_in
    # nodeadm's own file is left alone (nodeadm rewrites it at boot anyway).
    assert node.path("/etc/containerd/config.toml").read_text() == AL2023_NODEADM_CONFIG
    assert node.systemctl_calls() == [
        "is-active --quiet kubelet",
        "is-active --quiet containerd",
        "daemon-reload",
    ]
    _assert_containerd_data_on(node, "/opt/sagemaker")
    _assert_kubelet_on(node, "/opt/sagemaker")


def test_al2023_without_nvidia_runtime_keeps_runc_default_and_cdi_off(make_node):
    node = make_node("al2023", nvidia=False)
    # A node where nodeadm has not written its files yet.
    node.path("/etc/containerd/config.toml").unlink()
    node.path("/etc/containerd/base-runtime-spec.json").unlink()
    _ok(node.run())

    text = node.path(AL2023_CONFIG).read_text()
    cri = _cri(tomllib.loads(text))
    assert cri["enable_cdi"] is False
    assert cri["containerd"]["default_runtime_name"] == "runc"
    assert set(cri["containerd"]["runtimes"]) == {"runc"}
    assert cri["containerd"]["runtimes"]["runc"]["options"]["BinaryName"] == "/usr/sbin/runc"
    assert "nvidia" not in text
    # A base spec that does not exist would stop containerd from starting.
    assert "base_runtime_spec" not in cri["containerd"]["runtimes"]["runc"]
    assert cri["sandbox_image"] == "localhost/kubernetes/pause"


def test_al2023_reads_the_pause_image_from_a_containerd_2_nodeadm_config(make_node):
    node = make_node("al2023", nvidia=True)
    node.write(
        "/etc/containerd/config.toml",
        (
            "version = 3\n"
            "[plugins.'io.containerd.cri.v1.images'.pinned_images]\n"
            "sandbox = 'localhost/kubernetes/pause:latest'\n"
        ),
    )
    _ok(node.run())
    cri = _cri(tomllib.loads(node.path(AL2023_CONFIG).read_text()))
    assert cri["sandbox_image"] == "localhost/kubernetes/pause:latest"


def test_nvme_instance_store_is_used_when_it_is_the_only_volume(make_node):
    node = make_node("al2023", mounts=("/opt/dlami/nvme",), nvidia=True)
    _ok(node.run())
    config = tomllib.loads(node.path(AL2023_CONFIG).read_text())
    assert config["root"] == "/opt/dlami/nvme/containerd/data-root"
    _assert_kubelet_on(node, "/opt/dlami/nvme")
    assert "secondary volume: /opt/dlami/nvme" in node.log()


def test_ebs_volume_is_preferred_when_both_volumes_are_mounted(make_node):
    node = make_node("al2", mounts=("/opt/dlami/nvme", "/opt/sagemaker"))
    _ok(node.run())
    _assert_kubelet_on(node, "/opt/sagemaker")
    assert not node.path("/opt/dlami/nvme/kubelet").exists()


def test_volume_mounted_while_the_script_waits_is_picked_up(make_node):
    node = make_node("al2", mounts=())
    process = node.start(VOLUME_WAIT_SECONDS="30", VOLUME_POLL_SECONDS="1")
    try:
        node.wait_for_log("waiting for a secondary volume")
        node.mount("/opt/sagemaker")
        output, _ = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, output
    _assert_kubelet_on(node, "/opt/sagemaker")


def test_running_services_are_stopped_for_the_move_and_started_again(make_node):
    node = make_node("al2023", nvidia=True, active=("containerd", "kubelet"))
    _ok(node.run())
    assert node.systemctl_calls() == [
        "is-active --quiet kubelet",
        "stop kubelet",
        "is-active --quiet containerd",
        "stop containerd",
        "daemon-reload",
        "start containerd",
        "start kubelet",
    ]
    assert node.active_units() == {"containerd", "kubelet"}


def test_runs_from_a_downloaded_copy_of_the_folder_and_from_any_working_directory(make_node, tmp_path):
    download = tmp_path / "s3-download"
    shutil.copytree(SCRIPTS_DIR, download)
    node = make_node("al2")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _ok(node.run(download / "on_create.sh", cwd=elsewhere))
    assert f"from {download}" in result.stdout
    _assert_kubelet_on(node, "/opt/sagemaker")


def test_started_with_sh_it_reruns_itself_under_bash(make_node):
    if shutil.which("dash") is None:
        pytest.skip("needs a non-bash /bin/sh-like shell (dash) to prove the re-exec")
    node = make_node("al2")
    _ok(node.run(shell="dash"))
    _assert_kubelet_on(node, "/opt/sagemaker")


# --- data preservation ------------------------------------------------------------------------


def test_kubelet_data_modes_links_and_hard_links_survive_the_move(make_node):
    node = make_node("al2")
    pods = node.path("/var/lib/kubelet/pods/uid-1/volumes")
    pods.mkdir(parents=True)
    (pods / "data").write_text("pod data")
    (pods / "data").chmod(0o640)
    os.link(pods / "data", pods / "data-hardlink")
    os.symlink("volumes/data", node.path("/var/lib/kubelet/pods/uid-1/relative-link"))
    node.path("/var/lib/kubelet/pods/uid-1").chmod(0o700)
    before = {rel: value[:3] for rel, value in node.snapshot().items() if rel.startswith("var/lib/kubelet/")}

    _ok(node.run())

    moved = node.path("/opt/sagemaker/kubelet")
    after = {
        rel.replace("opt/sagemaker/kubelet/", "var/lib/kubelet/"): value[:3]
        for rel, value in node.snapshot().items()
        if rel.startswith("opt/sagemaker/kubelet/")
    }
    assert after == before
    assert oct(moved.stat().st_mode & 0o777) == oct(0o750)
    assert (moved / "pods/uid-1/volumes/data").stat().st_ino == (
        moved / "pods/uid-1/volumes/data-hardlink"
    ).stat().st_ino
    assert (node.path("/var/lib/kubelet") / "pods/uid-1/relative-link").read_text() == "pod data"


def test_containerd_copy_keeps_overlay_xattrs(make_node):
    node = make_node("al2")
    snapshot_dir = node.path("/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/etc")
    snapshot_dir.mkdir(parents=True)
    try:
        os.setxattr(snapshot_dir, "trusted.overlay.opaque", b"y")
        name = "trusted.overlay.opaque"
    except OSError:
        try:  # not root: the user namespace still proves xattrs are copied
            os.setxattr(snapshot_dir, "user.overlay.opaque", b"y")
            name = "user.overlay.opaque"
        except OSError:
            pytest.skip("this filesystem does not support extended attributes")
    _ok(node.run())
    copied = node.path("/opt/sagemaker/containerd/data-root/io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/etc")
    assert os.getxattr(copied, name) == b"y"
    # The original store stays where it was (a fallback, and what AL2 rollbacks expect).
    assert node.path("/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256/abc").exists()


def test_leftovers_on_the_volume_from_an_earlier_root_disk_are_replaced(make_node):
    node = make_node("al2023", nvidia=True)
    node.write("/opt/sagemaker/containerd/data-root/stale-al2-file", "old")
    node.write("/opt/sagemaker/kubelet/stale-pod", "old")
    node.write("/opt/sagemaker/kubelet.partial/half-copied", "old")
    _ok(node.run())
    assert not node.path("/opt/sagemaker/containerd/data-root/stale-al2-file").exists()
    assert not node.path("/opt/sagemaker/kubelet/stale-pod").exists()
    assert not node.path("/opt/sagemaker/kubelet.partial").exists()
    _assert_containerd_data_on(node, "/opt/sagemaker")
    _assert_kubelet_on(node, "/opt/sagemaker")


# --- idempotency ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_name", "nvidia", "active"),
    [
        ("al2", False, ()),
        ("al2023", True, ()),
        ("al2023", False, ("containerd", "kubelet")),
    ],
)
def test_rerun_succeeds_and_changes_nothing(make_node, os_name, nvidia, active):
    node = make_node(os_name, nvidia=nvidia, active=active)
    _ok(node.run())
    after_first = node.snapshot()
    calls_after_first = node.systemctl_calls()
    time.sleep(0.01)  # a rewrite would now show up as a newer mtime

    second = _ok(node.run())

    assert node.snapshot() == after_first
    assert node.systemctl_calls() == calls_after_first  # no reload, no stop/start
    assert "nothing to change" in second.stdout
    assert node.log().count("[stop] on_create.sh: success") == 2


def test_rerun_after_nvidia_runtime_appears_refreshes_config_but_keeps_live_data(make_node):
    node = make_node("al2023", nvidia=False, active=("containerd", "kubelet"))
    _ok(node.run())
    # containerd has been running on the volume since: its store there is the live one.
    node.write("/opt/sagemaker/containerd/data-root/pulled-after-the-move", "image")
    node.write("/usr/bin/nvidia-container-runtime", "#!/bin/sh\nexit 0\n", mode=0o755)
    calls_before = len(node.systemctl_calls())

    _ok(node.run())

    cri = _cri(tomllib.loads(node.path(AL2023_CONFIG).read_text()))
    assert cri["containerd"]["default_runtime_name"] == "nvidia"
    assert cri["enable_cdi"] is True
    assert node.path("/opt/sagemaker/containerd/data-root/pulled-after-the-move").read_text() == "image"
    # Drop-in unchanged, so no daemon-reload; containerd restarted to read the new config.
    assert node.systemctl_calls()[calls_before:] == [
        "is-active --quiet kubelet",
        "stop kubelet",
        "is-active --quiet containerd",
        "stop containerd",
        "start containerd",
        "start kubelet",
    ]
    assert "only refreshing its config" in node.log()


@pytest.mark.parametrize(
    ("os_name", "written_first", "lost"),
    [
        ("al2", AL2_CONFIGS[0], AL2_CONFIGS[1]),
        ("al2023", AL2023_CONFIG, AL2023_DROP_IN),
    ],
)
def test_rerun_after_a_crash_between_config_writes_only_writes_the_missing_one(make_node, os_name, written_first, lost):
    node = make_node(os_name, nvidia=True)
    _ok(node.run())
    # Roll back the file written last, as if the first run had died just before writing it.
    if os_name == "al2":
        node.write(lost, AL2_CONTAINERD_CONFIG)
    else:
        node.path(lost).unlink()
    kept = node.path(written_first).stat().st_mtime_ns
    calls_before = len(node.systemctl_calls())
    time.sleep(0.01)

    _ok(node.run())

    assert node.path(written_first).stat().st_mtime_ns == kept
    assert (
        tomllib.loads(node.path(AL2_CONFIGS[1] if os_name == "al2" else AL2023_CONFIG).read_text())["root"]
        == "/opt/sagemaker/containerd/data-root"
    )
    reloads = node.systemctl_calls()[calls_before:].count("daemon-reload")
    assert reloads == (1 if os_name == "al2023" else 0)
    _assert_containerd_data_on(node, "/opt/sagemaker")


def test_rerun_after_a_crash_between_copy_and_switch_finishes_the_move(make_node):
    node = make_node("al2")
    # State after a first run died right after copying kubelet's data: the copy exists on the
    # volume, but /var/lib/kubelet is still the real directory (and may have changed since).
    node.write("/opt/sagemaker/kubelet/kubeconfig", "old copy")
    node.write("/var/lib/kubelet/written-after-the-copy", "new")
    _ok(node.run())
    _assert_kubelet_on(node, "/opt/sagemaker")
    assert node.path("/var/lib/kubelet/written-after-the-copy").read_text() == "new"


# --- failures ---------------------------------------------------------------------------------


def test_without_a_secondary_volume_it_logs_and_goes_on_leaving_everything_on_the_root_disk(make_node):
    # A group without EBS on a type without instance storage gets no secondary volume: AWS's lifecycle
    # scripts go on, so must this one (failing would leave such a group unable to provision).
    node = make_node("al2", mounts=())  # /opt/sagemaker exists but nothing is mounted there
    before = node.snapshot()
    started = time.monotonic()
    result = _ok(node.run(VOLUME_WAIT_SECONDS="1", VOLUME_POLL_SECONDS="1", FAILURE_SLEEP_SECONDS="5"))
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 5  # waited for the volume, and no failure wait
    reason = "[warning] no secondary volume mounted at any of: /opt/sagemaker /opt/dlami/nvme (waited 1s)"
    log = node.log()
    assert reason in log and reason in result.stdout
    assert "containerd and kubelet keep their data on the root disk (OS: al2)" in log
    assert log.rstrip().endswith("[stop] on_create.sh: success")
    assert node.snapshot() == before
    assert node.systemctl_calls() == []


def test_without_a_secondary_volume_a_rerun_is_also_a_no_op(make_node):
    node = make_node("al2023", mounts=())
    before = node.snapshot()
    for _ in range(2):
        _ok(node.run(VOLUME_WAIT_SECONDS="0"))
    assert node.snapshot() == before
    assert node.log().count("[stop] on_create.sh: success") == 2


def test_failure_waits_the_configured_time_so_logs_reach_cloudwatch(make_node):
    node = make_node("ubuntu")
    started = time.monotonic()
    _failed(node.run(FAILURE_SLEEP_SECONDS="2"))
    assert time.monotonic() - started >= 2
    log = node.log()
    assert "failed (exit status 1); waiting 2s so the log reaches CloudWatch" in log
    assert log.index("waiting 2s") < log.index("[stop] on_create.sh: failed")


def test_a_failing_command_is_logged_with_its_location(make_node):
    node = make_node("al2")
    # A file where the volume's containerd directory should go: mkdir of the copy target fails.
    node.write("/opt/sagemaker/containerd", "not a directory")
    before = node.snapshot()
    _failed(node.run())
    log = node.log()
    assert "[error] command failed with exit status 1 at files.sh:" in log
    assert 'mkdir -p -- "$partial"' in log
    assert node.snapshot() == before  # the configs were not switched to a half-made copy


def test_kubelet_with_mounts_inside_is_not_moved(make_node):
    node = make_node("al2")
    node.mount("/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/pv/mount", device="fsx@tcp:/fsx", fstype="lustre")
    _failed(node.run())
    assert "refusing to move /var/lib/kubelet: something is mounted inside it" in node.log()
    assert not node.path("/var/lib/kubelet").is_symlink()
    assert node.path("/var/lib/kubelet/kubeconfig").exists()


def test_unsupported_os_fails_before_touching_anything(make_node):
    node = make_node("ubuntu")
    before = node.snapshot()
    _failed(node.run())
    assert "unsupported OS in /etc/os-release: ID='ubuntu' VERSION_ID='22.04'" in node.log()
    assert node.snapshot() == before


def test_al2_without_any_containerd_config_fails(make_node):
    node = make_node("al2")
    for config_path in AL2_CONFIGS:
        node.path(config_path).unlink()
    _failed(node.run())
    assert "no containerd config found" in node.log()
    assert not node.path("/var/lib/kubelet").is_symlink()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOLUME_WAIT_SECONDS", "5m"),
        ("VOLUME_POLL_SECONDS", "0"),
        ("SECONDARY_VOLUME_CANDIDATES", "opt/sagemaker"),
    ],
)
def test_bad_setting_is_reported_in_one_line_before_anything_changes(make_node, name, value):
    node = make_node("al2")
    before = node.snapshot()
    _failed(node.run(**{name: value}))
    errors = [line for line in node.log().splitlines() if "[error]" in line and name in line]
    assert len(errors) == 1, node.log()
    assert f"got '{value}'" in errors[0]
    assert node.snapshot() == before


def test_only_on_create_uploaded_fails_naming_the_missing_helper(make_node, tmp_path):
    lonely = tmp_path / "only-entrypoint"
    lonely.mkdir()
    shutil.copy(ON_CREATE, lonely / "on_create.sh")
    node = make_node("al2")
    before = node.snapshot()
    result = _failed(node.run(lonely / "on_create.sh"))
    message = f"helper settings.sh not found in {lonely}: upload the whole lifecycle_scripts folder"
    assert message in node.log()
    assert message in result.stdout
    assert node.snapshot() == before
