"""``config.gpu_types`` (the labels the cluster puts on GPU groups) against EC2's own instance-type data.

moto ships EC2 DescribeInstanceTypes data; every GPU type in botocore's ClusterInstanceType enum that EC2
knows must be in the table with the GPU model, count, memory and EFA interfaces EC2 reports. Neuron
(trn/inf) types report NeuronInfo, not GpuInfo, and must not be in the table.
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
from functools import lru_cache

import pytest

from config import gpu_types, sagemaker_api
from constructs.hyperpod_cluster.request import labels_for


@lru_cache(maxsize=1)
def ec2_types() -> dict:
    data = importlib.resources.files("moto.ec2") / "resources" / "instance_types.json.gz"
    return json.loads(gzip.decompress(data.read_bytes()))


def ec2_info(ml_type: str):
    return ec2_types().get(ml_type.removeprefix("ml."))


def gpu_ml_types() -> list[str]:
    return [t for t in sagemaker_api.cluster_instance_types() if (ec2_info(t) or {}).get("GpuInfo")]


def family(ec2_gpu_name: str) -> str:
    """EC2's GPU name in SkyPilot's spelling: 'RTX PRO Server 6000' -> 'rtxpro6000' (as sky's AWS fetcher does)."""
    return ec2_gpu_name.lower().replace(" server", "").replace(" ", "")


def test_the_enum_has_gpu_types_known_to_ec2():
    assert len(gpu_ml_types()) >= 40  # the check below would pass vacuously on an empty list


@pytest.mark.parametrize("ml_type", gpu_ml_types())
def test_every_gpu_type_in_the_enum_is_in_the_table_with_ec2s_numbers(ml_type):
    spec = gpu_types.gpu_spec(ml_type)
    assert spec is not None, f"{ml_type} has GPUs in EC2's data but no entry in config/gpu_types.py"
    info = ec2_info(ml_type)
    (gpu,) = info["GpuInfo"]["Gpus"]
    assert spec.accelerator.split("-")[0] == family(gpu["Name"])
    assert spec.count == gpu["Count"]
    assert spec.memory_gib == gpu["MemoryInfo"]["SizeInMiB"] // 1024
    assert spec.efa_interfaces == (info.get("NetworkInfo", {}).get("EfaInfo") or {}).get("MaximumEfaInterfaces", 0)
    assert spec.accelerator == spec.accelerator.lower()


def test_table_entries_are_cluster_instance_types_and_never_neuron():
    enum = set(sagemaker_api.cluster_instance_types())
    for ml_type in gpu_types.GPU_INSTANCE_TYPES:
        assert ml_type in enum, f"{ml_type} is not a ClusterInstanceType"
        info = ec2_info(ml_type)
        if info is not None:
            assert "NeuronInfo" not in info and info.get("GpuInfo"), ml_type


def test_neuron_types_get_no_accelerator_label():
    neuron = [t for t in sagemaker_api.cluster_instance_types() if "NeuronInfo" in (ec2_info(t) or {})]
    assert any(t.startswith("ml.trn") for t in neuron)
    assert all(labels_for(t) == {} for t in neuron)


def test_p4de_is_labelled_a100_80gb_so_skypilot_matches_it():
    assert labels_for("ml.p4de.24xlarge") == {"skypilot.co/accelerator": "a100-80gb"}
    assert labels_for("ml.p4d.24xlarge") == {"skypilot.co/accelerator": "a100"}
    assert labels_for("ml.m5.xlarge") == {}
