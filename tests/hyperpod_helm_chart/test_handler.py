"""The custom resource handler end to end: loopback GitHub, real helm, a loopback Kubernetes API.

Every helm call runs the real binary from the Lambda layer. The cluster-mutating call alone goes
through a PATH-style shim that records its argv and appends ``--dry-run=client``, so helm still
resolves the release against the API double (version + release Secrets, with the bearer token)
and renders the chart, but writes nothing. ``helm list`` and ``helm uninstall --ignore-not-found``
run unchanged against the double.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore.stub import Stubber

from constructs.hyperpod_helm_chart.chart_values import chart_values
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer import handler as handler_module
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.handler import ChartIntegrityError, Installer
from constructs.hyperpod_helm_chart.runtime.helm_chart_installer.helm_cli import HelmError

from .support import CHART_PATH, COMMIT, REPOSITORY, sha256sum_digest

pytestmark = pytest.mark.slow

CLUSTER = "hp-eks"
REGION = "us-west-2"


def properties(**overrides) -> dict:
    props = {
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:framework",
        "ClusterName": CLUSTER,
        "Region": REGION,
        "Repository": REPOSITORY,
        "Commit": COMMIT,
        "ChartPath": CHART_PATH,
        "ExpectedFilesSha256": "",
        "ReleaseName": "dependencies",
        "Namespace": "kube-system",
        "Values": json.dumps(chart_values(REGION)),
    }
    props.update(overrides)
    return props


def event(request: str, props: dict, **extra) -> dict:
    return {"RequestType": request, "ResourceProperties": props, "LogicalResourceId": "Release", **extra}


class HelmShim:
    """An executable standing in for /opt/helm/helm: logs each argv, then execs the real helm."""

    def __init__(self, real_helm: Path, workdir: Path):
        self.log = workdir / "helm-calls"
        self.log.mkdir()
        self.path = workdir / "helm"
        self.path.write_text(f"""#!/bin/sh
entry="{self.log}/$(date +%s%N)-$$"
printf '%s\\0' "$@" > "$entry.argv"
if [ "$1" = "upgrade" ]; then
  for a in "$@"; do case "$a" in *.json) cp "$a" "$entry.values.json";; esac; done
  "{real_helm}" "$@" --dry-run=client > "$entry.out"; rc=$?; cat "$entry.out"; exit $rc
fi
exec "{real_helm}" "$@"
""")
        self.path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        return [[a.decode() for a in f.read_bytes().split(b"\0")[:-1]] for f in sorted(self.log.glob("*.argv"))]

    def upgrade_record(self) -> tuple[list[str], dict, str]:
        (argv_file,) = [f for f in sorted(self.log.glob("*.argv")) if f.read_bytes().startswith(b"upgrade\0")]
        stem = argv_file.with_suffix("")
        argv = [a.decode() for a in argv_file.read_bytes().split(b"\0")[:-1]]
        values = json.loads(Path(f"{stem}.values.json").read_text())
        return argv, values, Path(f"{stem}.out").read_text()


@pytest.fixture
def shim(helm_binary, tmp_path) -> HelmShim:
    return HelmShim(helm_binary, tmp_path)


@pytest.fixture
def eks(kube_api):
    client = botocore.session.Session().create_client("eks", region_name=REGION)
    stubber = Stubber(client)
    stubber.activate()
    stubber.cluster = {
        "name": CLUSTER,
        "arn": f"arn:aws:eks:{REGION}:123456789012:cluster/{CLUSTER}",
        "status": "ACTIVE",
        "endpoint": kube_api.endpoint,
        "certificateAuthority": {"data": base64.b64encode(kube_api.ca_pem).decode()},
    }
    stubber.client = client
    yield stubber
    stubber.deactivate()


def installer(shim, github, eks, tmp_path, *, remaining=400.0, attempts=12, sleeps=None) -> Installer:
    (tmp_path / "scratch").mkdir(exist_ok=True)
    return Installer(
        session=botocore.session.Session(),
        helm_binary=str(shim.path),
        archive_base_url=github.base_url,
        scratch_root=tmp_path / "scratch",
        remaining_seconds=lambda: remaining,
        eks_client_for=lambda region: eks.client,
        reach_attempts=attempts,
        reach_delay=3,
        sleep=(sleeps.append if sleeps is not None else (lambda _s: None)),
    )


def _rendered(dry_run_output: str) -> dict[tuple[str, str], dict]:
    manifest = dry_run_output.split("MANIFEST:", 1)[1]
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifest) if d}


def _tokens(kube_api) -> set[str]:
    return {auth for _, _, auth in kube_api.requests}


def test_create_installs_with_reset_values_and_the_complete_values_file(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})

    result = installer(shim, github, eks, tmp_path).handle(event("Create", properties()))

    digest = sha256sum_digest(github.chart_dir)
    assert result == {
        "PhysicalResourceId": f"{CLUSTER}/kube-system/dependencies",
        "Data": {"FilesSha256": digest, "ReleaseName": "dependencies", "Namespace": "kube-system"},
    }
    argv, values, output = shim.upgrade_record()
    chart_dir = argv[3]
    work = Path(chart_dir).parents[1]
    assert argv == [
        "upgrade",
        "--install",
        "dependencies",
        chart_dir,
        "--namespace",
        "kube-system",
        "--create-namespace",
        "--reset-values",
        "--server-side=true",
        "--force-conflicts",
        "-f",
        f"{chart_dir}/regional-values/values-{REGION}.yaml",
        "-f",
        f"{work}/values.json",
        "--timeout",
        "325s",  # 400 s left in the invocation minus the 75 s reserve
        "--history-max",
        "10",
    ]
    assert chart_dir == f"{work}/source/chart" and work.parent == tmp_path / "scratch"
    assert values == chart_values(REGION)
    objects = _rendered(output)
    image = objects[("DaemonSet", "health-monitoring-agent")]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("905418368575.dkr.ecr.us-west-2.amazonaws.com/")
    assert ("ConfigMap", "mpi-operator-component") in objects and ("ConfigMap", "storage-component") not in objects
    assert [c[:2] for c in shim.calls()] == [
        ["dependency", "list"],  # packaged duplicates of file:// sub-charts are dropped
        ["dependency", "list"],
        ["dependency", "build"],
        ["dependency", "list"],
        ["list", "--namespace"],
        ["upgrade", "--install"],
    ]
    assert not list((tmp_path / "scratch").iterdir())  # scratch space removed
    eks.assert_no_pending_responses()


def test_helm_authenticates_with_a_k8s_aws_v1_token_for_the_cluster(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    installer(shim, github, eks, tmp_path).handle(event("Create", properties()))

    assert {m for m, _, _ in kube_api.requests} == {"GET"}  # the dry run wrote nothing
    assert any("/api/v1/namespaces/kube-system/secrets" in p for _, p, _ in kube_api.requests)
    for auth in _tokens(kube_api):
        assert auth.startswith("Bearer k8s-aws-v1.")
        body = auth[len("Bearer k8s-aws-v1.") :]
        url = urllib.parse.urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode())
        query = dict(urllib.parse.parse_qsl(url.query))
        assert url.netloc == f"sts.{REGION}.amazonaws.com" and query["Action"] == "GetCallerIdentity"
        assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"


def test_update_reapplies_every_value_so_nothing_stale_survives(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    new_values = copy.deepcopy(chart_values(REGION))
    new_values["mpi-operator"]["enabled"] = False
    old = properties()

    result = installer(shim, github, eks, tmp_path).handle(
        event(
            "Update",
            properties(Values=json.dumps(new_values)),
            OldResourceProperties=old,
            PhysicalResourceId=f"{CLUSTER}/kube-system/dependencies",
        )
    )

    assert result["PhysicalResourceId"] == f"{CLUSTER}/kube-system/dependencies"  # in place, no replacement
    argv, values, output = shim.upgrade_record()
    assert "--reset-values" in argv and "--reuse-values" not in argv
    assert values == new_values
    objects = _rendered(output)
    assert ("ConfigMap", "mpi-operator-component") not in objects
    assert ("ConfigMap", "deep-health-check-component") in objects


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"ReleaseName": "hyperpod-deps"}, "eks.helm_chart.release_name 'dependencies' -> 'hyperpod-deps'"),
        ({"Namespace": "hyperpod"}, "eks.helm_chart.namespace 'kube-system' -> 'hyperpod'"),
    ],
)
def test_update_that_renames_the_release_or_namespace_is_refused_before_helm_runs(
    shim, github, eks, kube_api, tmp_path, change, named
):
    update = event(
        "Update",
        properties(**change),
        OldResourceProperties=properties(),
        PhysicalResourceId=f"{CLUSTER}/kube-system/dependencies",
    )
    with pytest.raises(handler_module.RenameRefused) as refused:
        installer(shim, github, eks, tmp_path).handle(update)
    message = str(refused.value)
    assert "\n" not in message and named in message and "Nothing was changed" in message
    assert shim.calls() == [] and github.server.requests == []  # no fetch, no helm, no AWS call
    eks.assert_no_pending_responses()


def test_rollback_of_a_refused_rename_reinstalls_the_original_release(shim, github, eks, kube_api, tmp_path):
    """CloudFormation's rollback Update carries the original properties and the unchanged physical id."""
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    rollback = event(
        "Update",
        properties(),
        OldResourceProperties=properties(ReleaseName="hyperpod-deps"),
        PhysicalResourceId=f"{CLUSTER}/kube-system/dependencies",
    )
    result = installer(shim, github, eks, tmp_path).handle(rollback)
    assert result["PhysicalResourceId"] == f"{CLUSTER}/kube-system/dependencies"
    assert shim.upgrade_record()[0][2] == "dependencies"


def test_a_new_eks_cluster_may_use_another_release_name(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    moved = event(
        "Update",
        properties(ReleaseName="hyperpod-deps"),
        OldResourceProperties=properties(ClusterName="old-cluster"),
        PhysicalResourceId="old-cluster/kube-system/dependencies",
    )
    result = installer(shim, github, eks, tmp_path).handle(moved)
    assert result["PhysicalResourceId"] == f"{CLUSTER}/kube-system/hyperpod-deps"


def test_pinned_digest_that_matches_installs(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    digest = sha256sum_digest(github.chart_dir)
    result = installer(shim, github, eks, tmp_path).handle(event("Create", properties(ExpectedFilesSha256=digest)))
    assert result["Data"]["FilesSha256"] == digest
    assert shim.upgrade_record()


def test_digest_mismatch_fails_before_helm_or_the_cluster_is_touched(shim, github, eks, kube_api, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ChartIntegrityError) as info:
        installer(shim, github, eks, tmp_path).handle(event("Create", properties(ExpectedFilesSha256=wrong)))
    message = str(info.value)
    assert f"expected {wrong}, got {sha256sum_digest(github.chart_dir)}" in message
    assert f"{REPOSITORY}@{COMMIT}:{CHART_PATH}" in message and "Nothing was installed" in message
    assert shim.calls() == [] and kube_api.requests == []
    assert not list((tmp_path / "scratch").iterdir())


def test_unpinned_digest_is_logged_for_pinning(shim, github, eks, kube_api, tmp_path, caplog):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    caplog.set_level("INFO")
    installer(shim, github, eks, tmp_path).handle(event("Create", properties()))
    digest = sha256sum_digest(github.chart_dir)
    assert any(
        digest in r.getMessage() and "eks.helm_chart.files_sha256" in r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING"
    )


def test_access_entry_propagation_401s_are_waited_out(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    kube_api.unauthorized_remaining = 2
    sleeps = []
    installer(shim, github, eks, tmp_path, sleeps=sleeps).handle(event("Create", properties()))
    assert [c[0] for c in shim.calls()].count("list") == 3
    assert 3 in sleeps and sleeps.count(3) == 2
    assert shim.upgrade_record()


def test_cluster_that_never_authorizes_fails_with_a_hint(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    kube_api.unauthorized_remaining = 1000
    with pytest.raises(
        HelmError,
        match="(?s)did not accept the handler after 3 attempts; check the handler "
        "role's EKS access entry.*provide credentials",
    ):
        installer(shim, github, eks, tmp_path, attempts=3).handle(event("Create", properties()))
    assert "upgrade" not in [c[0] for c in shim.calls()]


def test_too_little_time_left_refuses_to_start_helm(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    with pytest.raises(TimeoutError, match="not starting helm"):
        installer(shim, github, eks, tmp_path, remaining=120).handle(event("Create", properties()))
    assert "upgrade" not in [c[0] for c in shim.calls()]


def test_delete_uninstalls_and_treats_a_missing_release_as_done(shim, github, eks, kube_api, tmp_path):
    eks.add_response("describe_cluster", {"cluster": eks.cluster}, {"name": CLUSTER})
    physical = f"{CLUSTER}/kube-system/dependencies"
    result = installer(shim, github, eks, tmp_path).handle(event("Delete", properties(), PhysicalResourceId=physical))
    assert result == {"PhysicalResourceId": physical}
    assert shim.calls()[-1] == [
        "uninstall",
        "dependencies",
        "--namespace",
        "kube-system",
        "--ignore-not-found",
        "--timeout",
        "325s",
    ]
    assert github.server.requests == []  # delete never fetches the chart


def test_delete_after_the_cluster_is_gone_succeeds_without_helm(shim, github, eks, kube_api, tmp_path):
    eks.add_client_error(
        "describe_cluster",
        service_error_code="ResourceNotFoundException",
        service_message=f"No cluster found for name: {CLUSTER}.",
        http_status_code=404,
    )
    installer(shim, github, eks, tmp_path).handle(
        event("Delete", properties(), PhysicalResourceId=f"{CLUSTER}/kube-system/dependencies")
    )
    assert shim.calls() == []


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("Commit", "main", "property Commit='main' does not match"),
        ("ExpectedFilesSha256", "ABC", "property ExpectedFilesSha256='ABC' does not match"),
        ("ReleaseName", "Dependencies", "property ReleaseName='Dependencies' does not match"),
        ("Namespace", "kube_system", "property Namespace='kube_system' does not match"),
        ("Values", "[1, 2]", "property Values must be a JSON object"),
        ("Values", "{not json", "property Values is not JSON"),
        ("ClusterName", "", "property ClusterName is missing"),
    ],
)
def test_bad_properties_fail_with_the_key_before_anything_runs(
    shim, github, eks, kube_api, tmp_path, key, value, message
):
    with pytest.raises(ValueError, match=message):
        installer(shim, github, eks, tmp_path).handle(event("Create", properties(**{key: value})))
    assert github.server.requests == [] and shim.calls() == []


def test_on_event_reads_its_environment_and_skips_helm_for_a_vanished_cluster(monkeypatch, tmp_path):
    """The Lambda entry point with moto's EKS: nothing to uninstall when the cluster is already gone."""
    from moto import mock_aws

    class Context:
        @staticmethod
        def get_remaining_time_in_millis():
            return 600_000

    monkeypatch.setenv("HELM_BINARY", str(tmp_path / "no-helm-here"))
    with mock_aws():
        result = handler_module.on_event(
            event("Delete", properties(), PhysicalResourceId=f"{CLUSTER}/kube-system/dependencies"), Context()
        )
    assert result == {"PhysicalResourceId": f"{CLUSTER}/kube-system/dependencies"}
