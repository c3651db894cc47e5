"""The rehearsal with the observability and training-operator switches on: the synthesized stacks
deployed into moto_server create a real (moto) Prometheus workspace whose endpoints are the outputs,
the add-ons pass EKS's CreateAddon checks (cluster, Pod Identity trust for this cluster, JSON
configuration naming this workspace), and the post-deploy CLI still reads the outputs.

Grafana stays off here: moto has no Amazon Managed Grafana backend, so a Grafana workspace cannot be
rehearsed (its template is covered by tests/observability and the all-on synth in tests/app)."""

from __future__ import annotations

import json
import shutil

import pytest

from config import outputs as keys
from constructs.observability.infrastructure import ADDON_NAME as OBSERVABILITY
from constructs.training_operator.infrastructure import ADDON_NAME as TRAINING_OPERATOR
from constructs.training_operator.infrastructure import CERT_MANAGER_ADDON_NAME
from tests.app.conftest import run_cdk_synth
from tests.rehearsal.rehearsal import Rehearsal, RehearsalFailure

pytestmark = pytest.mark.slow
SWITCHES = ("observability.enabled=true", "observability.logging=true", "training_operator.enabled=true")


def _stack_output(r: Rehearsal, key: str) -> str:
    """A raw stack output as ``--outputs-file`` records it (post_deploy does not read these keys)."""
    (value,) = [outs[key] for outs in r.outputs.values() if key in outs]
    return value


@pytest.fixture(scope="module")
def switched_on(tmp_path_factory):
    out = tmp_path_factory.mktemp("ops-rehearsal") / "cdk.out"
    result = run_cdk_synth(out, *[a for s in SWITCHES for a in ("-c", s)])
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_switched_on_stacks_deploy_with_a_real_workspace_and_addons_eks_would_accept(
    switched_on, sky_tools_bin, tmp_path
):
    with Rehearsal(switched_on, tmp_path / "rehearsal", sky_tools_bin) as r:
        r.deploy()
        (workspace,) = r.aws("amp").list_workspaces()["workspaces"]
        assert workspace["alias"] == "hyperpod-sky-hyperpod-sky"
        assert _stack_output(r, keys.PROMETHEUS_WORKSPACE_ID) == workspace["workspaceId"]
        query = f"https://aps-workspaces.{r.region}.amazonaws.com/workspaces/{workspace['workspaceId']}"
        assert _stack_output(r, keys.PROMETHEUS_QUERY_URL) == query
        assert _stack_output(r, keys.PROMETHEUS_REMOTE_WRITE_URL) == f"{query}/api/v1/remote_write"

        addons = {
            physical.details["AddonName"]: physical.details
            for physical in r.stacks.physical.values()
            if physical.type == "AWS::EKS::Addon"
        }
        assert {OBSERVABILITY, TRAINING_OPERATOR, CERT_MANAGER_ADDON_NAME} <= set(addons)
        eks_name = r.output(keys.EKS_CLUSTER_NAME)
        assert {a["ClusterName"] for a in addons.values()} == {eks_name}
        configuration = json.loads(addons[OBSERVABILITY]["ConfigurationValues"])
        assert configuration["ampWorkspace"] == {"prometheusEndpoint": query, "arn": workspace["arn"]}
        assert configuration["logging"] == {"enabled": True}
        # The roles exist in IAM (moto checked the trust policy's grammar) and trust this cluster's pods.
        iam = r.aws("iam", "us-east-1")
        for name in (OBSERVABILITY, TRAINING_OPERATOR):
            (association,) = addons[name]["PodIdentityAssociations"]
            role = iam.get_role(RoleName=association["RoleArn"].rsplit("/", 1)[1])["Role"]
            (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
            assert trust["Condition"]["ArnEquals"]["aws:SourceArn"] == r.output(keys.EKS_CLUSTER_ARN)
        assert "CertManager" not in json.dumps(addons[CERT_MANAGER_ADDON_NAME].get("PodIdentityAssociations", []))

        # The CLI reads the outputs file with the extra keys as before.
        r.step_kubeconfig()
        r.destroy()


def test_an_addon_role_that_trusts_another_cluster_fails_the_deploy(switched_on, sky_tools_bin, tmp_path):
    # The rehearsal's add-on check must be able to fail: the training operator's role trusts another cluster.
    copy = tmp_path / "cdk.out"
    copy.mkdir()
    for path in switched_on.iterdir():
        if path.suffix == ".json":
            shutil.copyfile(path, copy / path.name)
        else:
            (copy / path.name).symlink_to(path)
    template_path = copy / "hyperpod-sky-hyperpod.template.json"
    template = json.loads(template_path.read_text())
    (addon,) = [
        r for r in template["Resources"].values() if r.get("Properties", {}).get("AddonName") == TRAINING_OPERATOR
    ]
    role_id = addon["Properties"]["PodIdentityAssociations"][0]["RoleArn"]["Fn::GetAtt"][0]
    (trust,) = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    trust["Condition"]["ArnEquals"]["aws:SourceArn"] = "arn:aws:eks:us-east-1:123456789012:cluster/other"
    template_path.write_text(json.dumps(template))
    with Rehearsal(copy, tmp_path / "rehearsal", sky_tools_bin) as r:
        with pytest.raises(RehearsalFailure) as failure:
            r.deploy()
    assert f"(AWS::EKS::Addon {TRAINING_OPERATOR}): role " in str(failure.value)
    assert "does not let EKS Pod Identity assume it for cluster arn:aws:eks:" in str(failure.value)
