"""Wall time of the real `cdk synth` for the full app and for a bare one-EKS-cluster app, in one run.

Prints, per app: best and median wall time over N runs, cdk.out size and the number of Lambda
functions in the synthesized templates. The target is full app <= 1.5x the bare-EKS floor.
Usage: python benchmarks/synth.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _synth(app: str | None, outdir: Path) -> float:
    cmd = [str(BIN / "cdk"), "synth", "--no-lookups", "--quiet", "-o", str(outdir)]
    if app:
        cmd += ["--app", app]
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "CDK_DISABLE_VERSION_CHECK": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _measure(outdir: Path) -> tuple[int, int]:
    size = sum(p.stat().st_size for p in outdir.rglob("*") if p.is_file())
    lambdas = 0
    for template in outdir.glob("*.template.json"):
        resources = json.loads(template.read_text()).get("Resources", {})
        lambdas += sum(1 for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
    return size, lambdas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    apps = {"full app": None, "bare eks_v2 + kubectl layer": f"{BIN / 'python'} benchmarks/bare_eks_app.py"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, app in apps.items():
            times = []
            for i in range(args.runs):
                outdir = Path(tmp) / f"{len(results)}-{i}"
                times.append(_synth(app, outdir))
            size, lambdas = _measure(outdir)
            results[name] = (min(times), statistics.median(times), size, lambdas)
    print(f"{'app':32} {'best s':>8} {'median s':>9} {'cdk.out MB':>11} {'lambdas':>8}")
    for name, (best, median, size, lambdas) in results.items():
        print(f"{name:32} {best:8.2f} {median:9.2f} {size / 1e6:11.2f} {lambdas:8d}")
    full, floor = results["full app"][1], results["bare eks_v2 + kubectl layer"][1]
    print(f"full / floor (median): {full / floor:.2f}x (target <= 1.50x)")


if __name__ == "__main__":
    main()
