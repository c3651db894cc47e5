"""The instance-type to GPU table shared by the HyperPod cluster construct and the post-deploy step.

SkyPilot reads only the ``skypilot.co/accelerator`` label (lowercase) to learn a node's GPU type;
HyperPod sets ``node.kubernetes.io/instance-type`` but nothing SkyPilot understands. The cluster
construct puts this label on every instance group through ``KubernetesConfig.Labels`` and the
post-deploy ``label-gpus`` step repairs nodes that lack it, so both must agree on one table.

Names follow SkyPilot's canonical GPU names (``sky.utils.gpu_names``), lowercased. p4d carries
40 GB A100s (``a100``) and p4de 80 GB ones (``a100-80gb``): SkyPilot does not match an
``A100-80GB`` request against an ``a100`` label. The test suite cross-checks every entry
against EC2's instance-type data shipped with moto (GPU model, count and memory).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCELERATOR_LABEL = "skypilot.co/accelerator"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


@dataclass(frozen=True)
class GpuSpec:
    """What one instance of a GPU type carries."""

    accelerator: str  # value of skypilot.co/accelerator (lowercase)
    count: int  # GPUs per instance
    memory_gib: int  # memory per GPU, GiB
    efa_interfaces: int  # EFA interfaces a pod may request (0: no EFA)


def _sized(accelerator: str, memory_gib: int, prefix: str, layout: dict[str, tuple[int, int]]) -> dict[str, GpuSpec]:
    return {
        f"ml.{prefix}.{size}": GpuSpec(accelerator, count, memory_gib, efa) for size, (count, efa) in layout.items()
    }


GPU_INSTANCE_TYPES: dict[str, GpuSpec] = {
    # Hopper / Blackwell training instances
    "ml.p4d.24xlarge": GpuSpec("a100", 8, 40, 4),
    "ml.p4de.24xlarge": GpuSpec("a100-80gb", 8, 80, 4),
    "ml.p5.4xlarge": GpuSpec("h100", 1, 80, 1),
    "ml.p5.48xlarge": GpuSpec("h100", 8, 80, 32),
    "ml.p5e.48xlarge": GpuSpec("h200", 8, 141, 32),
    "ml.p5en.48xlarge": GpuSpec("h200", 8, 141, 16),
    "ml.p6-b200.48xlarge": GpuSpec("b200", 8, 179, 8),
    "ml.p6-b300.48xlarge": GpuSpec("b300", 8, 268, 16),
    # Not in moto's EC2 data yet: 4 Blackwell GPUs per GB200 NVL72 compute tray.
    "ml.p6e-gb200.36xlarge": GpuSpec("gb200", 4, 185, 17),
    # Inference / small-training instances
    **_sized(
        "a10g",
        22,
        "g5",
        {
            "xlarge": (1, 0),
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (4, 1),
            "16xlarge": (1, 1),
            "24xlarge": (4, 1),
            "48xlarge": (8, 1),
        },
    ),
    **_sized(
        "l4",
        22,
        "g6",
        {
            "xlarge": (1, 0),
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (4, 1),
            "16xlarge": (1, 1),
            "24xlarge": (4, 1),
            "48xlarge": (8, 1),
        },
    ),
    **_sized("l4", 22, "gr6", {"4xlarge": (1, 0), "8xlarge": (1, 1)}),
    **_sized(
        "l40s",
        44,
        "g6e",
        {
            "xlarge": (1, 0),
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (4, 1),
            "16xlarge": (1, 1),
            "24xlarge": (4, 2),
            "48xlarge": (8, 4),
        },
    ),
    **_sized(
        "t4",
        16,
        "g4dn",
        {
            "xlarge": (1, 0),
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (4, 1),
            "16xlarge": (1, 1),
        },
    ),
    **_sized(
        "rtxpro6000",
        96,
        "g7e",
        {
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (2, 1),
            "24xlarge": (4, 2),
            "48xlarge": (8, 4),
        },
    ),
    **_sized(
        "rtxpro4500",
        32,
        "g7",
        {
            "2xlarge": (1, 0),
            "4xlarge": (1, 0),
            "8xlarge": (1, 1),
            "12xlarge": (2, 1),
            "24xlarge": (4, 1),
            "48xlarge": (8, 2),
        },
    ),
}


def gpu_spec(instance_type: str) -> GpuSpec | None:
    """The GPU spec of an ``ml.*`` instance type, or None for CPU/Neuron types."""
    return GPU_INSTANCE_TYPES.get(instance_type)


def accelerator_label(instance_type: str) -> str | None:
    """The ``skypilot.co/accelerator`` value a node of this type must carry, if it has GPUs."""
    spec = gpu_spec(instance_type)
    return spec.accelerator if spec else None
