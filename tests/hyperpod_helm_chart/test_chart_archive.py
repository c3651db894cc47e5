"""Fetching the chart from a GitHub-shaped archive: integrity, path safety and size bounds."""

from __future__ import annotations

import os
import tarfile

import pytest

from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import chart_archive
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_archive import ChartArchiveError, fetch_chart
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest import chart_files_sha256

from .support import (
    CHART_PATH,
    COMMIT,
    REPOSITORY,
    TOP_FOLDER,
    archive_path,
    file_member,
    github_tarball,
    link_member,
    sha256sum_digest,
)

OTHER_COMMIT = "1" * 40


def _no_sleep(_seconds):
    pass


def _serve_variant(github, *extra, stage=True, commit=OTHER_COMMIT, top=None):
    body = github_tarball(
        github.stage if stage else None, top_folder=top or f"sagemaker-hyperpod-cli-{commit}", extra=tuple(extra)
    )
    github.server.serve(archive_path(commit=commit), body)
    return commit


def test_fetch_extracts_only_the_chart_and_its_digest_matches_coreutils(github, tmp_path):
    chart = fetch_chart(REPOSITORY, COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url)

    assert (chart / "Chart.yaml").is_file()
    assert (chart / "charts/health-monitoring-agent/templates/health-monitoring-agent.yaml").is_file()
    written = {p.relative_to(tmp_path / "work").as_posix() for p in (tmp_path / "work").rglob("*") if p.is_file()}
    assert all(p.startswith("chart/") for p in written), written  # no README.md, no src/, archive deleted
    expected = sha256sum_digest(github.chart_dir)
    assert chart_files_sha256(chart) == expected
    assert github.server.requests == [archive_path()]


def test_digest_changes_when_one_byte_or_one_name_changes(github, tmp_path):
    chart = fetch_chart(REPOSITORY, COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url)
    before = chart_files_sha256(chart)
    values = chart / "values.yaml"
    values.write_bytes(values.read_bytes().replace(b"storage:\n  enabled: true", b"storage:\n  enabled: truE"))
    assert chart_files_sha256(chart) != before
    values.write_bytes(values.read_bytes().replace(b"truE", b"true"))
    assert chart_files_sha256(chart) == before
    os.rename(chart / "templates/namespace.yaml", chart / "templates/namespace2.yaml")
    assert chart_files_sha256(chart) != before


@pytest.mark.parametrize(
    "name, message",
    [
        (f"{TOP_FOLDER}/{CHART_PATH}/../../../../evil.sh", "escapes the archive root"),
        (f"{TOP_FOLDER}/{CHART_PATH}/templates/../../../outside.yaml", "escapes the archive root"),
        ("/etc/cron.d/evil", "absolute"),
        ("other-top-folder/helm_chart/HyperPodHelmChart/x.yaml", "outside the expected top folder"),
    ],
)
def test_unsafe_member_names_are_rejected_and_nothing_lands_outside(github, tmp_path, name, message):
    commit = _serve_variant(
        github, file_member(name.replace(TOP_FOLDER, f"sagemaker-hyperpod-cli-{OTHER_COMMIT}"), b"boom")
    )
    with pytest.raises(ChartArchiveError, match=message):
        fetch_chart(REPOSITORY, commit, CHART_PATH, tmp_path / "work", base_url=github.base_url)
    assert not (tmp_path / "evil.sh").exists() and not (tmp_path / "outside.yaml").exists()


@pytest.mark.parametrize("hard", [False, True])
def test_links_inside_the_chart_are_rejected(github, tmp_path, hard):
    top = f"sagemaker-hyperpod-cli-{OTHER_COMMIT}"
    commit = _serve_variant(github, link_member(f"{top}/{CHART_PATH}/templates/passwd.yaml", "/etc/passwd", hard=hard))
    kind = "hard link" if hard else "symlink"
    with pytest.raises(ChartArchiveError, match=f"templates/passwd.yaml' is a {kind}"):
        fetch_chart(REPOSITORY, commit, CHART_PATH, tmp_path / "work", base_url=github.base_url)


def test_duplicate_member_cannot_overwrite_an_extracted_file(github, tmp_path):
    top = f"sagemaker-hyperpod-cli-{OTHER_COMMIT}"
    commit = _serve_variant(github, file_member(f"{top}/{CHART_PATH}/values.yaml", b"storage: {enabled: true}\n"))
    with pytest.raises(ChartArchiveError, match="appears twice"):
        fetch_chart(REPOSITORY, commit, CHART_PATH, tmp_path / "work", base_url=github.base_url)


def test_oversize_archive_is_rejected_while_downloading(github, tmp_path):
    with pytest.raises(ChartArchiveError, match="over the 1024-byte limit"):
        fetch_chart(REPOSITORY, COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url, max_archive_bytes=1024)


def test_oversize_chart_is_rejected_while_extracting(github, tmp_path):
    top = f"sagemaker-hyperpod-cli-{OTHER_COMMIT}"
    # Highly compressible, so the archive itself stays small.
    commit = _serve_variant(github, file_member(f"{top}/{CHART_PATH}/files/big.bin", b"\0" * (2 * 1024 * 1024)))
    with pytest.raises(ChartArchiveError, match="exceeds the 1048576-byte size limit at .*big.bin"):
        fetch_chart(
            REPOSITORY, commit, CHART_PATH, tmp_path / "work", base_url=github.base_url, max_chart_bytes=1024 * 1024
        )


def test_missing_chart_path_fails_naming_the_path(github, tmp_path):
    with pytest.raises(ChartArchiveError, match=r"chart path 'helm_chart/NoSuchChart' not found in the archive"):
        fetch_chart(REPOSITORY, COMMIT, "helm_chart/NoSuchChart", tmp_path / "work", base_url=github.base_url)


def test_directory_without_chart_yaml_is_not_a_chart(github, tmp_path):
    with pytest.raises(ChartArchiveError, match="'helm_chart/HyperPodHelmChart/templates' has no Chart.yaml"):
        fetch_chart(REPOSITORY, COMMIT, f"{CHART_PATH}/templates", tmp_path / "work", base_url=github.base_url)


@pytest.mark.parametrize("chart_path", ["../etc", "/helm_chart/HyperPodHelmChart", "helm_chart/../x", ""])
def test_chart_path_must_stay_inside_the_repository(github, tmp_path, chart_path):
    with pytest.raises(ChartArchiveError, match="must be a relative path inside the repository"):
        fetch_chart(REPOSITORY, COMMIT, chart_path, tmp_path / "work", base_url=github.base_url)
    assert github.server.requests == []  # rejected before any download


def test_unknown_commit_fails_at_once_with_the_url(github, tmp_path):
    with pytest.raises(ChartArchiveError, match=r"tar.gz/f{40} returned HTTP 404 \(unknown repository or commit\?\)"):
        fetch_chart(REPOSITORY, "f" * 40, CHART_PATH, tmp_path / "work", base_url=github.base_url, sleep=_no_sleep)
    assert len(github.server.requests) == 1  # a 404 is not retried


def test_transient_server_errors_are_retried_with_backoff(github, tmp_path):
    github.server.faults[archive_path()] = [503, 429]
    delays = []
    chart = fetch_chart(
        REPOSITORY, COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url, sleep=delays.append
    )
    assert chart_files_sha256(chart) == sha256sum_digest(github.chart_dir)
    assert delays == [1, 2]
    assert github.server.requests == [archive_path()] * 3


def test_persistent_server_errors_give_up_after_bounded_attempts(github, tmp_path):
    github.server.faults[archive_path()] = [502] * 10
    with pytest.raises(ChartArchiveError, match="failed after 4 attempts, last error HTTP 502"):
        fetch_chart(REPOSITORY, COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url, sleep=_no_sleep)
    assert len(github.server.requests) == 4


def test_not_a_tarball_is_reported(github, tmp_path):
    github.server.serve(archive_path(commit=OTHER_COMMIT), b"<html>rate limited</html>")
    with pytest.raises(ChartArchiveError, match="not a readable tar.gz"):
        fetch_chart(REPOSITORY, OTHER_COMMIT, CHART_PATH, tmp_path / "work", base_url=github.base_url)


def test_pax_global_header_of_github_archives_is_not_a_member(github, tmp_path):
    # GitHub puts the commit id in a pax global header; it must not count as a member outside the top folder.
    body = github_tarball(github.stage)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(body)
    with tarfile.open(archive) as tar:
        assert tar.pax_headers.get("comment") == COMMIT
        assert tar.getnames()[0] == TOP_FOLDER
    chart = chart_archive.extract_chart(archive, TOP_FOLDER, CHART_PATH, tmp_path / "out")
    assert chart_files_sha256(chart) == sha256sum_digest(github.chart_dir)
