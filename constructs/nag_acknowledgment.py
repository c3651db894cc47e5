"""cdk-nag 3.x acknowledgments: one reason, several exact finding ids, on the narrowest construct.

Shared by the stacks and the constructs (a plain module under constructs/, importable as
``constructs.nag_acknowledgment`` because the jsii package extends its path)."""

from aws_cdk import Acknowledgment, Validations

from constructs import IConstruct

PLUGIN = "AwsSolutions"


def acknowledge(scope: IConstruct, reason: str, *finding_ids: str) -> None:
    """cdk-nag 3.x matches ids exactly (``AwsSolutions::AwsSolutions-IAM5[Action::s3:List*]``)."""
    if not reason.strip() or not finding_ids:
        raise ValueError("an acknowledgment needs a reason and at least one finding id")
    for finding in finding_ids:
        Validations.of(scope).acknowledge(Acknowledgment(id=f"{PLUGIN}::{finding}", reason=reason))
