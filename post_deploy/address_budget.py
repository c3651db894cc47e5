"""How many IPv4 addresses HyperPod nodes take from their subnets, so preflight can compare that with
what the subnets have free before CreateCluster runs out of addresses an hour in.

Counted per node (all from the HyperPod subnets, since HyperPod attaches every interface there):
- 1 primary address: the node's primary network interface.
- 1 per EFA interface (``config/gpu_types.py``): HyperPod attaches the EFA devices as interfaces,
  each with its own primary address (counted even when an EFA-only interface might not need one,
  so the figure is an upper bound).
- pod addresses: the VPC CNI gives pods secondary addresses on the ENIs of network card 0 and, with
  its default ``WARM_ENI_TARGET=1``, keeps a whole spare ENI of them. At the node's full pod
  capacity it holds ``ENIs x (addresses per ENI - 1)`` secondary addresses (the EKS max-pods
  formula without its +2 for host-network pods). ENIs and addresses per ENI come from EC2
  ``DescribeInstanceTypes`` for the EC2 type behind the ``ml.*`` type.

``minimum`` (primary + EFA) is what the nodes need to start at all; ``full`` adds every pod address
the CNI can claim. Fewer free than ``minimum`` blocks; fewer than ``full`` means pods go Pending
with "failed to assign an IP address" once the nodes fill up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.gpu_types import gpu_spec

# AWS reserves the first four and the last address of every subnet (VPC user guide, "Subnet CIDR blocks").
RESERVED_PER_SUBNET = 5


@dataclass(frozen=True)
class NodeAddresses:
    instance_type: str
    primary: int
    efa: int
    pods: int

    @property
    def minimum(self) -> int:
        return self.primary + self.efa

    @property
    def full(self) -> int:
        return self.primary + self.efa + self.pods


def ec2_type(ml_type: str) -> str:
    """The EC2 instance type behind a SageMaker ``ml.*`` type (ml.p5.48xlarge -> p5.48xlarge)."""
    return ml_type.removeprefix("ml.")


def node_addresses(ml_type: str, ec2_instance_type: Mapping[str, Any] | None) -> NodeAddresses:
    """Addresses one node of ``ml_type`` takes; ``ec2_instance_type`` is its DescribeInstanceTypes entry
    (None when EC2 does not know the type: then only primary and EFA are counted)."""
    spec = gpu_spec(ml_type)
    efa = spec.efa_interfaces if spec else 0
    pods = 0
    if ec2_instance_type:
        info = ec2_instance_type.get("NetworkInfo", {})
        per_eni = int(info.get("Ipv4AddressesPerInterface", 0))
        cards = {c.get("NetworkCardIndex"): c for c in info.get("NetworkCards", [])}
        default_card = cards.get(info.get("DefaultNetworkCardIndex", 0))
        enis = int(
            default_card["MaximumNetworkInterfaces"] if default_card else info.get("MaximumNetworkInterfaces", 0)
        )
        pods = max(enis * (per_eni - 1), 0)
    return NodeAddresses(ml_type, primary=1, efa=efa, pods=pods)


def subnet_capacity(cidr_mask: int) -> int:
    """Usable addresses of a new subnet with this prefix length."""
    return 2 ** (32 - cidr_mask) - RESERVED_PER_SUBNET
