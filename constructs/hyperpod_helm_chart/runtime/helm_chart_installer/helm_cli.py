"""The helm commands the installer runs, with the flags that keep a release reproducible.

The known peer bug was an upgrade that silently dropped the ``--set`` flags of the first install.
Here every install and upgrade passes the complete values file and ``--reset-values``, so the
release always equals chart defaults + the values of this deployment, never an older revision's.
Helm runs with its homes under the invocation's scratch directory (Lambda's only writable place is
/tmp, and a warm container must not reuse a previous invocation's repository cache) and with an
environment that carries no AWS credentials: helm only needs the kubeconfig's token.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger(__name__)

# Statuses from `helm dependency list` that mean the sub-chart is usable as it is.
_PRESENT = {"ok", "unpacked"}
_PASSTHROUGH_ENV = (
    "PATH",
    "LANG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)
_OUTPUT_TAIL = 4000


class HelmError(RuntimeError):
    """A helm command failed; the message names the command and ends with its error output."""


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    repository: str
    status: str


def parse_dependency_list(output: str) -> list[Dependency]:
    """Rows of `helm dependency list` (a tab-separated table; a WARNING line when there are none)."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) != 4 or cells[0] == "NAME":
            continue
        rows.append(Dependency(*cells))
    return rows


@dataclass
class HelmCli:
    binary: str
    home: Path
    kubeconfig: Path
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
        env.update(
            {
                "HOME": str(self.home),
                "HELM_CACHE_HOME": str(self.home / "cache"),
                "HELM_CONFIG_HOME": str(self.home / "config"),
                "HELM_DATA_HOME": str(self.home / "data"),
                "KUBECONFIG": str(self.kubeconfig),
            }
        )
        return env

    def run(self, args: Sequence[str], *, timeout: float) -> str:
        argv = [self.binary, *args]
        LOG.info("running %s", " ".join(argv))
        try:
            done = self.runner(argv, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise HelmError(f"helm {args[0]} did not finish within {timeout:.0f}s") from None
        if done.stdout:
            LOG.info("helm %s stdout:\n%s", args[0], done.stdout[-_OUTPUT_TAIL:])
        if done.returncode != 0:
            # helm often prints the cause (e.g. an unreachable chart repository) on stdout and only a
            # consequence on stderr, so the error carries both.
            detail = (done.stderr or "").strip()[-_OUTPUT_TAIL:]
            if done.stdout.strip():
                detail += f" | output: {done.stdout.strip()[-_OUTPUT_TAIL:]}"
            raise HelmError(f"helm {' '.join(args[:2])} failed (exit {done.returncode}): {detail}")
        if done.stderr:
            LOG.info("helm %s stderr:\n%s", args[0], done.stderr[-_OUTPUT_TAIL:])
        return done.stdout

    def dependencies(self, chart_dir: Path) -> list[Dependency]:
        return parse_dependency_list(self.run(["dependency", "list", str(chart_dir)], timeout=60))

    def drop_packaged_duplicates(self, chart_dir: Path) -> list[str]:
        """Delete ``charts/<name>-<version>.tgz`` where ``charts/<name>/`` is the ``file://`` sub-chart itself.

        Why: the pinned upstream chart commits a stale build of one sub-chart beside its source
        (``charts/health-monitoring-agent-0.1.0.tgz``: an older agent image and no DaemonSet for
        non-NVIDIA nodes). helm loads both, and which one it renders varies from run to run
        (tests/hyperpod_helm_chart/test_rendered_chart.py). Chart.yaml names the directory
        (``repository: file://charts/<name>``), so the directory is what the chart means and the
        archive goes. Call it after the files digest is checked, so the pin still covers the files as
        published. Reads the dependencies through ``helm dependency list`` (no YAML parser in Lambda).
        Returns the removed file names.
        """
        removed = []
        for dep in self.dependencies(chart_dir):
            if not dep.repository.startswith("file://charts/"):
                continue
            source = chart_dir / dep.repository[len("file://") :]
            packaged = chart_dir / "charts" / f"{dep.name}-{dep.version}.tgz"
            if source.is_dir() and packaged.is_file():
                packaged.unlink()
                removed.append(packaged.name)
                LOG.warning("removed %s: charts/%s is the sub-chart Chart.yaml names", packaged.name, source.name)
        return removed

    def build_dependencies_if_needed(
        self, chart_dir: Path, *, timeout: float = 300, attempts: int = 3, sleep: Callable[[float], None] = time.sleep
    ) -> list[Dependency]:
        """Run `helm dependency build` only when a declared sub-chart is not in charts/ yet.

        Local ``file://charts/x`` sub-charts that are already unpacked are fine as they are;
        remote ones (the upstream chart pulls the NVIDIA and EFA device plugins from their
        publishers' Helm repositories, and cert-manager from OCI) must be downloaded. Returns the
        dependencies that were missing. A failed build (a chart repository answering 5xx, a reset
        connection) is retried a bounded number of times, then reported with helm's output.
        """
        missing = [d for d in self.dependencies(chart_dir) if d.status not in _PRESENT]
        if not missing:
            LOG.info("all chart dependencies present, no dependency build needed")
            return []
        LOG.info(
            "building dependencies; not present: %s",
            ", ".join(f"{d.name} {d.version} from {d.repository} ({d.status})" for d in missing),
        )
        for attempt in range(1, attempts + 1):
            try:
                self.run(["dependency", "build", str(chart_dir)], timeout=timeout)
                break
            except HelmError as exc:
                if attempt == attempts:
                    raise
                LOG.warning("dependency build failed (attempt %d/%d), retrying: %s", attempt, attempts, exc)
                sleep(5 * attempt)
        still = [d for d in self.dependencies(chart_dir) if d.status not in _PRESENT]
        if still:
            raise HelmError(
                "helm dependency build left dependencies unresolved: "
                + ", ".join(f"{d.name} ({d.status})" for d in still)
            )
        return missing

    @staticmethod
    def upgrade_install_args(
        release: str, chart_dir: Path, namespace: str, values_files: Sequence[Path], timeout_seconds: int
    ) -> list[str]:
        args = [
            "upgrade",
            "--install",
            release,
            str(chart_dir),
            "--namespace",
            namespace,
            "--create-namespace",
            "--reset-values",
            # helm 4 applies server-side; "auto" (its default) would keep whatever method the previous
            # revision used. Explicitly server-side, forcing conflicts: the release must equal chart +
            # these values (as --reset-values says), so a field the chart sets that another manager
            # changed since (a hand `kubectl edit`, a controller, a helm 3 client-side revision) goes back
            # to the chart's value instead of failing the upgrade and rolling the stack back. Fields the
            # chart does not set stay with their managers. tests/hyperpod_helm_chart/test_server_side_apply.py
            "--server-side=true",
            "--force-conflicts",
        ]
        for values in values_files:
            args += ["-f", str(values)]
        return args + ["--timeout", f"{timeout_seconds}s", "--history-max", "10"]

    def upgrade_install(
        self, release: str, chart_dir: Path, namespace: str, values_files: Sequence[Path], *, timeout_seconds: int
    ) -> str:
        # The process gets a minute more than helm's own --timeout, so helm normally fails first and
        # records the release as failed instead of leaving it pending (which blocks the next upgrade).
        return self.run(
            self.upgrade_install_args(release, chart_dir, namespace, values_files, timeout_seconds),
            timeout=timeout_seconds + 60,
        )

    def uninstall(self, release: str, namespace: str, *, timeout_seconds: int) -> str:
        return self.run(
            ["uninstall", release, "--namespace", namespace, "--ignore-not-found", "--timeout", f"{timeout_seconds}s"],
            timeout=timeout_seconds + 60,
        )

    def wait_until_reachable(
        self,
        namespace: str,
        *,
        attempts: int,
        delay: float,
        before_attempt: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """List releases until the API server answers with authorization.

        A new EKS access entry takes a little while to be honoured (401/403 at first), and a
        private endpoint can take a moment to resolve from a fresh ENI; both pass by themselves.
        """
        last = ""
        for attempt in range(1, attempts + 1):
            if before_attempt:
                before_attempt()
            try:
                self.run(["list", "--namespace", namespace, "--output", "json"], timeout=60)
                return
            except HelmError as exc:
                last = str(exc)
            if attempt < attempts:
                LOG.warning("cluster not reachable yet (attempt %d/%d): %s", attempt, attempts, last)
                sleep(delay)
        raise HelmError(
            f"the cluster API did not accept the handler after {attempts} attempts; check the handler role's "
            f"EKS access entry and that its subnets reach the cluster endpoint. Last error: {last}"
        )
