"""CloudFormation custom resource (CDK Provider framework ``on_event``) for the HyperPod dependency chart.

Create/Update: fetch the chart from the pinned commit, check its files digest, build missing
sub-charts, then ``helm upgrade --install --reset-values`` with the complete values of this
deployment. Delete: ``helm uninstall`` (a release or cluster that is already gone is success).

Everything runs synchronously inside one invocation (no ``is_complete``): helm itself does not
wait for pods here, so the work fits well inside Lambda's 15 minutes, and every step is bounded
by the time the invocation has left so helm fails cleanly instead of being killed mid-release.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from . import eks_auth, kubernetes_objects
from .chart_archive import CODELOAD_BASE_URL, fetch_chart
from .chart_digest import chart_files_sha256
from .helm_cli import HelmCli

LOG = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Helm release names: DNS-1123 subdomain of at most 53 characters; namespaces: DNS-1123 label.
_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_HELM_TIMEOUT_SECONDS = 600
# Kept back from the invocation's remaining time: helm's own exit, the process backstop, the response.
_RESERVE_SECONDS = 75
_EKS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8})


class ChartIntegrityError(RuntimeError):
    """The chart files at the pinned commit do not have the pinned digest."""


@dataclass(frozen=True)
class ReleaseSpec:
    cluster_name: str
    region: str
    repository: str
    commit: str
    chart_path: str
    expected_files_sha256: str
    release_name: str
    namespace: str
    values: dict

    @property
    def physical_id(self) -> str:
        # A new cluster, namespace or release name is a new resource: CloudFormation then deletes
        # the old release (with the old properties) after the new one is installed.
        return f"{self.cluster_name}/{self.namespace}/{self.release_name}"

    @classmethod
    def from_properties(cls, props: dict[str, Any], *, for_delete: bool = False) -> ReleaseSpec:
        def text(key: str, pattern: re.Pattern | None = None, *, empty_ok: bool = False) -> str:
            value = props.get(key, "")
            if not isinstance(value, str) or (not value and not empty_ok):
                raise ValueError(f"property {key} is missing or not a string: {value!r}")
            if value and pattern is not None and not pattern.match(value):
                raise ValueError(f"property {key}={value!r} does not match {pattern.pattern}")
            return value

        release = text("ReleaseName", _RELEASE)
        if len(release) > 53:
            raise ValueError(f"property ReleaseName={release!r} is longer than helm's 53 characters")
        common = dict(
            cluster_name=text("ClusterName"),
            region=text("Region"),
            release_name=release,
            namespace=text("Namespace", _NAMESPACE),
        )
        if for_delete:
            return cls(repository="", commit="", chart_path="", expected_files_sha256="", values={}, **common)
        try:
            values = json.loads(text("Values"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"property Values is not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ValueError("property Values must be a JSON object (the complete helm values)")
        return cls(
            repository=text("Repository"),
            commit=text("Commit", _COMMIT),
            chart_path=text("ChartPath"),
            expected_files_sha256=text("ExpectedFilesSha256", _SHA256, empty_ok=True),
            values=values,
            **common,
        )


class RenameRefused(ValueError):
    """An Update would move the release to another name or namespace on the same EKS cluster."""


def refuse_rename(event: dict, spec: ReleaseSpec) -> None:
    """Refuse an Update that renames the release or moves its namespace on the same cluster.

    Why: a new name or namespace is a new physical resource, so CloudFormation would install a second
    release first and delete the old one afterwards. The second install collides with the cluster-scoped
    objects (ClusterRoles, ClusterRoleBindings, CRDs, namespaces) the first release owns (helm refuses
    objects annotated for another release), the update fails, and the stack rolls back. Config cannot
    see the deployed name, but this handler can: the current one is in the PhysicalResourceId
    (``cluster/namespace/release``; OldResourceProperties otherwise). A rollback Update carries the
    original properties, which match the physical id, so it is never refused. A new EKS cluster gets its
    own release and nothing collides.
    """
    parts = str(event.get("PhysicalResourceId", "")).split("/")
    cluster: str | None
    namespace: str | None
    release: str | None
    if len(parts) == 3:
        cluster, namespace, release = parts
    else:
        old = event.get("OldResourceProperties") or {}
        cluster, namespace, release = old.get("ClusterName"), old.get("Namespace"), old.get("ReleaseName")
    if cluster != spec.cluster_name or (namespace, release) == (spec.namespace, spec.release_name):
        return
    changes = []
    if release != spec.release_name:
        changes.append(f"eks.helm_chart.release_name {release!r} -> {spec.release_name!r}")
    if namespace != spec.namespace:
        changes.append(f"eks.helm_chart.namespace {namespace!r} -> {spec.namespace!r}")
    raise RenameRefused(
        f"refusing to move the HyperPod chart release on cluster {cluster} ({'; '.join(changes)}): a second "
        "release would collide with the cluster-scoped objects the first one owns and the update would fail; "
        f"set them back to release_name {release!r} and namespace {namespace!r} (to move it, destroy the EKS "
        "stack and deploy again). Nothing was changed."
    )


def write_values_files(spec: ReleaseSpec, chart_dir: Path, work: Path) -> list[Path]:
    """The ``-f`` files of every install/upgrade, in order: the chart's own regional file when it has one
    (as peers pass it), then this deployment's complete values (written to ``work``). Tests render the
    pinned chart with exactly these files."""
    files = []
    regional = chart_dir / "regional-values" / f"values-{spec.region}.yaml"
    if regional.is_file():
        files.append(regional)
    values = work / "values.json"
    values.write_text(json.dumps(spec.values, indent=2, sort_keys=True))
    files.append(values)
    return files


class Installer:
    """The steps of one invocation; collaborators are injected so tests can run them for real."""

    def __init__(
        self,
        *,
        session: botocore.session.Session,
        helm_binary: str,
        archive_base_url: str,
        scratch_root: Path,
        remaining_seconds: Callable[[], float],
        eks_client_for: Callable[[str], Any] | None = None,
        reach_attempts: int = 12,
        reach_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.session = session
        self.eks_client_for = eks_client_for or (
            lambda region: session.create_client("eks", region_name=region, config=_EKS_CONFIG)
        )
        self.helm_binary = helm_binary
        self.archive_base_url = archive_base_url
        self.scratch_root = scratch_root
        self.remaining_seconds = remaining_seconds
        self.reach_attempts = reach_attempts
        self.reach_delay = reach_delay
        self.sleep = sleep

    def handle(self, event: dict) -> dict:
        if event.get("ResourceType") == kubernetes_objects.RESOURCE_TYPE:
            return self.handle_objects(event)
        request = event["RequestType"]
        props = event["ResourceProperties"]
        if request == "Delete":
            spec = ReleaseSpec.from_properties(props, for_delete=True)
            self.uninstall(spec)
            return {"PhysicalResourceId": event.get("PhysicalResourceId", spec.physical_id)}
        if request not in ("Create", "Update"):
            raise ValueError(f"unknown RequestType {request!r}")
        spec = ReleaseSpec.from_properties(props)
        if request == "Update":
            refuse_rename(event, spec)
        digest = self.install(spec)
        return {
            "PhysicalResourceId": spec.physical_id,
            "Data": {"FilesSha256": digest, "ReleaseName": spec.release_name, "Namespace": spec.namespace},
        }

    def handle_objects(self, event: dict) -> dict:
        """``Custom::KubernetesObjects`` (``kubernetes_objects.py``), with this installer's EKS auth."""

        def api_for(props: dict) -> kubernetes_objects.KubeApi | None:
            spec = ReleaseSpec.from_properties(
                {**props, "ReleaseName": "objects", "Namespace": "default"}, for_delete=True
            )
            cluster = self._describe(spec, missing_ok=True)
            if cluster is None:
                return None
            return kubernetes_objects.KubeApi(
                cluster["endpoint"],
                cluster["certificateAuthority"]["data"],
                lambda: eks_auth.bearer_token(self.session, spec.cluster_name, spec.region),
                delay=self.reach_delay,
                sleep=self.sleep,
            )

        deadline = time.monotonic() + self.remaining_seconds() - _RESERVE_SECONDS
        return kubernetes_objects.handle(event, api_for, deadline=deadline)

    def install(self, spec: ReleaseSpec) -> str:
        work = Path(tempfile.mkdtemp(prefix="helm-chart-", dir=self.scratch_root))
        try:
            chart_dir = fetch_chart(
                spec.repository,
                spec.commit,
                spec.chart_path,
                work / "source",
                base_url=self.archive_base_url,
                sleep=self.sleep,
            )
            digest = self.verify(spec, chart_dir)
            helm = HelmCli(self.helm_binary, work / "helm", work / "kubeconfig")
            helm.drop_packaged_duplicates(chart_dir)
            helm.build_dependencies_if_needed(chart_dir, timeout=min(300, self._helm_timeout()), sleep=self.sleep)
            values_files = write_values_files(spec, chart_dir, work)
            cluster = self._describe(spec)  # raises when the cluster is missing (missing_ok is False)
            assert cluster is not None
            refresh = self._kubeconfig_writer(spec, helm.kubeconfig, cluster)
            helm.wait_until_reachable(
                spec.namespace,
                attempts=self.reach_attempts,
                delay=self.reach_delay,
                before_attempt=refresh,
                sleep=self.sleep,
            )
            refresh()
            helm.upgrade_install(
                spec.release_name, chart_dir, spec.namespace, values_files, timeout_seconds=self._helm_timeout()
            )
            LOG.info(
                "release %s/%s installed from %s@%s:%s (chart files sha256 %s)",
                spec.namespace,
                spec.release_name,
                spec.repository,
                spec.commit,
                spec.chart_path,
                digest,
            )
            return digest
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def verify(self, spec: ReleaseSpec, chart_dir: Path) -> str:
        digest = chart_files_sha256(chart_dir)
        where = f"{spec.repository}@{spec.commit}:{spec.chart_path}"
        if not spec.expected_files_sha256:
            LOG.warning(
                "chart files sha256 of %s is %s; not enforced. Pin it as eks.helm_chart.files_sha256 "
                "to fail on any change.",
                where,
                digest,
            )
        elif digest != spec.expected_files_sha256:
            raise ChartIntegrityError(
                f"chart files sha256 mismatch for {where}: expected {spec.expected_files_sha256}, got {digest}. "
                "Nothing was installed. If the commit was changed on purpose, review the chart and pin the new "
                "digest (python -m constructs.hyperpod_helm_chart.runtime.helm_chart_installer.chart_digest)."
            )
        else:
            LOG.info("chart files sha256 of %s matches the pinned %s", where, digest)
        return digest

    def uninstall(self, spec: ReleaseSpec) -> None:
        cluster = self._describe(spec, missing_ok=True)
        if cluster is None:
            LOG.info(
                "EKS cluster %s no longer exists; release %s is gone with it", spec.cluster_name, spec.release_name
            )
            return
        work = Path(tempfile.mkdtemp(prefix="helm-chart-", dir=self.scratch_root))
        try:
            helm = HelmCli(self.helm_binary, work / "helm", work / "kubeconfig")
            refresh = self._kubeconfig_writer(spec, helm.kubeconfig, cluster)
            helm.wait_until_reachable(
                spec.namespace,
                attempts=self.reach_attempts,
                delay=self.reach_delay,
                before_attempt=refresh,
                sleep=self.sleep,
            )
            refresh()
            helm.uninstall(spec.release_name, spec.namespace, timeout_seconds=self._helm_timeout())
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _describe(self, spec: ReleaseSpec, *, missing_ok: bool = False) -> dict | None:
        eks = self.eks_client_for(spec.region)
        try:
            return eks.describe_cluster(name=spec.cluster_name)["cluster"]
        except eks.exceptions.ResourceNotFoundException:
            if missing_ok:
                return None
            raise

    def _kubeconfig_writer(self, spec: ReleaseSpec, path: Path, cluster: dict) -> Callable[[], None]:
        def write() -> None:
            eks_auth.write_kubeconfig(
                path,
                cluster_name=spec.cluster_name,
                endpoint=cluster["endpoint"],
                certificate_authority_data=cluster["certificateAuthority"]["data"],
                token=eks_auth.bearer_token(self.session, spec.cluster_name, spec.region),
            )

        return write

    def _helm_timeout(self) -> int:
        budget = min(MAX_HELM_TIMEOUT_SECONDS, int(self.remaining_seconds()) - _RESERVE_SECONDS)
        if budget < 60:
            raise TimeoutError(f"only {self.remaining_seconds():.0f}s left in this invocation; not starting helm")
        return budget


def on_event(event: dict, context: Any) -> dict:
    logging.getLogger().setLevel(logging.INFO)
    LOG.info("%s %s", event.get("RequestType"), event.get("LogicalResourceId"))
    installer = Installer(
        session=botocore.session.get_session(),
        helm_binary=os.environ.get("HELM_BINARY", "/opt/helm/helm"),
        archive_base_url=os.environ.get("ARCHIVE_BASE_URL", CODELOAD_BASE_URL),
        scratch_root=Path(tempfile.gettempdir()),
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    return installer.handle(event)
