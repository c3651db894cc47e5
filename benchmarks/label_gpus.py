"""Benchmark ``label-gpus`` on 1,000 HyperPod GPU nodes served by the loopback API double.

Targets: under 5 s wall time, exactly one write per node that needed a change, zero writes on a
second run. The double runs in this process and shares the GIL with the client; ``--latency-ms``
adds a per-request delay standing in for the round trip to a real API server (EKS in-region is
single-digit to tens of milliseconds), which is what the worker pool exists to overlap.

    python -m benchmarks.label_gpus [--nodes 1000] [--workers 16] [--latency-ms 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/label_gpus.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from post_deploy.kube import kube_api_client  # noqa: E402
from post_deploy.labels import reconcile_gpu_labels  # noqa: E402
from tests.k8s_double import K8sDouble, seed, write_kubeconfig  # noqa: E402

# (instance type, label already on the node): a mix of missing, wrong and correct labels
MIX = [
    ("ml.p5.48xlarge", None),
    ("ml.p5.48xlarge", "H100"),
    ("ml.p5.48xlarge", "h100"),
    ("ml.p4de.24xlarge", "a100"),
    ("ml.p4de.24xlarge", None),
    ("ml.p5en.48xlarge", None),
    ("ml.g5.12xlarge", "a10g"),
    ("ml.g6e.48xlarge", None),
    ("ml.p6-b200.48xlarge", None),
    ("ml.g5.48xlarge", None),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added to every API request")
    args = parser.parse_args()

    with K8sDouble(latency=args.latency_ms / 1000) as api, tempfile.TemporaryDirectory() as tmp:
        needs_change = 0
        for i in range(args.nodes):
            instance_type, label = MIX[i % len(MIX)]
            api.add_node(seed.hyperpod_node(instance_type, accelerator=label))
            needs_change += label != seed.gpu_spec(instance_type).accelerator
        for _ in range(20):  # CPU and system nodes that must stay untouched
            api.add_node(seed.cpu_hyperpod_node())
            api.add_node(seed.system_node())
        kubeconfig = write_kubeconfig(api, Path(tmp) / "config")
        client = kube_api_client(str(kubeconfig.path), kubeconfig.context, pool_size=args.workers)

        api.reset_log()
        start = time.perf_counter()
        first = reconcile_gpu_labels(client, workers=args.workers)
        first_seconds = time.perf_counter() - start
        first_writes = len(api.writes())

        api.reset_log()
        start = time.perf_counter()
        second = reconcile_gpu_labels(client, workers=args.workers)
        second_seconds = time.perf_counter() - start
        second_writes = len(api.writes())
        client.close()

    print(
        f"nodes: {args.nodes} GPU + 40 CPU/system, workers: {args.workers}, "
        f"API latency: {args.latency_ms:g} ms per request"
    )
    print(f"needed a change: {needs_change}")
    print(
        f"first run:  {first_seconds:.2f} s, changed {len(first.changed)}, API writes {first_writes}, "
        f"failed {len(first.failed)}"
    )
    print(f"second run: {second_seconds:.2f} s, changed {len(second.changed)}, API writes {second_writes}")
    ok = (
        first_seconds < 5
        and first_writes == needs_change == len(first.changed)
        and second_writes == 0
        and first.ok
        and second.ok
    )
    print("targets (< 5 s, one write per node needing one, 0 on second run):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
