"""The EKS control-plane (audit) log group is encrypted with a key of its own, and that key lets CloudWatch Logs use
it for this one log group only (AWS docs, "Encrypt log data in CloudWatch Logs using AWS KMS")."""

from __future__ import annotations

import json

EKS = "hyperpod-sky-eks.template.json"


def test_the_control_plane_log_group_gets_a_rotating_key_usable_by_logs_for_this_group_only(cdk_out):
    resources = json.loads((cdk_out / EKS).read_text())["Resources"]
    (retention,) = [r for r in resources.values() if r["Type"] == "Custom::ServiceLogGroupRetention"]
    key_ref = retention["Properties"]["KmsKeyArn"]["Fn::GetAtt"][0]
    key = resources[key_ref]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    logs_statements = [s for s in statements if "Service" in s.get("Principal", {})]
    conditioned = [s for s in logs_statements if "kms:GenerateDataKey" in s["Action"]]
    (data_keys,) = conditioned
    context = json.dumps(data_keys["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"])
    assert ":log-group:/aws/eks/hyperpod-sky-eks/cluster" in context
    role_policy = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Role"])
    assert "logs:AssociateKmsKey" in role_policy
