"""The network the other layers use: the network stack's own VPC, or ids of one someone else owns.

With ``network.existing`` there is no network stack at all: each stack that needs the VPC imports it
by id (``from_vpc_attributes``-style, no lookups, so ``cdk synth --no-lookups`` still needs no
credentials). Imported ids are plain strings, so no stack exports or imports anything for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2

from config import AppConfig
from constructs import Construct
from stacks.network import NetworkStack


@dataclass(frozen=True)
class Network:
    vpc: ec2.IVpc
    hyperpod_subnets: list[ec2.ISubnet]
    eks_subnets: list[ec2.ISubnet]
    security_group: ec2.ISecurityGroup


def created_network(stack: NetworkStack) -> Network:
    return Network(stack.vpc, stack.hyperpod_subnets, stack.eks_subnets, stack.security_group)


def imported_network(scope: Construct, config: AppConfig) -> Network:
    """The VPC, subnets and security group of ``network.existing``, imported into ``scope``'s stack.

    The AZ names only label the imported VPC (CDK wants some); where the subnets really are is theirs,
    and ``make preflight`` checks it against ``hyperpod.availability_zone_ids``. The security group is
    imported immutable: the app adds its rules between node kinds as separate resources
    (``stacks/eks.py``), never by changing the group itself.
    """
    existing = config.network.existing
    vpc = ec2.Vpc.from_vpc_attributes(
        scope, "ExistingVpc", vpc_id=existing.vpc_id, availability_zones=list(config.network.availability_zones)
    )

    # A subnet may serve both HyperPod and EKS: import each id once.
    by_id = {
        sid: ec2.Subnet.from_subnet_id(scope, f"ExistingSubnet-{sid}", sid)
        for sid in dict.fromkeys((*existing.hyperpod_subnet_ids, *existing.eks_subnet_ids))
    }
    return Network(
        vpc=vpc,
        hyperpod_subnets=[by_id[s] for s in existing.hyperpod_subnet_ids],
        eks_subnets=[by_id[s] for s in existing.eks_subnet_ids],
        security_group=ec2.SecurityGroup.from_security_group_id(
            scope, "ExistingSecurityGroup", existing.security_group_id, mutable=False
        ),
    )
