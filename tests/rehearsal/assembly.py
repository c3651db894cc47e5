"""The parts of a CDK cloud assembly (``cdk.out``) a rehearsal needs: stacks in deployment order,
their templates, exports and file assets.

Read from ``manifest.json`` and each stack's ``*.assets.json`` the way the CDK CLI reads them, so
the rehearsal deploys exactly what ``cdk deploy`` would upload: a Lambda's ``Code.S3Key`` names an
asset hash, and the asset manifest says which folder under ``cdk.out`` holds its files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class AssemblyError(ValueError):
    """``cdk.out`` lacks something the rehearsal needs; the message names it."""


@dataclass
class Stack:
    name: str
    artifact_id: str
    region: str | None  # None when the stack is environment-agnostic
    template_file: Path
    template: dict[str, Any]
    dependencies: tuple[str, ...]
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset hash -> manifest entry

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.get("Resources", {})

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self.template.get("Outputs", {})

    def resources_of_type(self, type_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == type_name:
                yield logical_id, resource


class CloudAssembly:
    """Stacks of one ``cdk.out``, in the order ``cdk deploy --all`` deploys them."""

    def __init__(self, outdir: Path):
        self.outdir = Path(outdir)
        manifest_path = self.outdir / "manifest.json"
        if not manifest_path.is_file():
            raise AssemblyError(f"{manifest_path} not found: not a cloud assembly (run cdk synth)")
        artifacts = json.loads(manifest_path.read_text())["artifacts"]
        stacks: dict[str, Stack] = {}
        for artifact_id, artifact in artifacts.items():
            if artifact.get("type") != "aws:cloudformation:stack":
                continue
            props = artifact.get("properties", {})
            template_file = self.outdir / props["templateFile"]
            region = artifact.get("environment", "").rsplit("/", 1)[-1]
            stack = Stack(
                name=props.get("stackName") or artifact_id,
                artifact_id=artifact_id,
                region=None if region in ("", "unknown-region") else region,
                template_file=template_file,
                template=json.loads(template_file.read_text()),
                dependencies=tuple(
                    d
                    for d in artifact.get("dependencies", [])
                    if artifacts.get(d, {}).get("type") == "aws:cloudformation:stack"
                ),
            )
            for dep in artifact.get("dependencies", []):
                if artifacts.get(dep, {}).get("type") == "cdk:asset-manifest":
                    asset_file = self.outdir / artifacts[dep]["properties"]["file"]
                    stack.assets.update(json.loads(asset_file.read_text()).get("files", {}))
            stacks[artifact_id] = stack
        self._by_id = stacks
        self.stacks = [stacks[i] for i in _deployment_order(stacks)]

    def stack(self, name: str) -> Stack:
        for stack in self.stacks:
            if stack.name == name:
                return stack
        raise AssemblyError(f"stack {name!r} is not in {self.outdir} (it has {', '.join(s.name for s in self.stacks)})")

    def exporter(self, export_name: str) -> tuple[Stack, str]:
        """The stack and output key that export ``export_name`` (what Fn::ImportValue reads)."""
        for stack in self.stacks:
            for key, output in stack.outputs.items():
                if output.get("Export", {}).get("Name") == export_name:
                    return stack, key
        raise AssemblyError(f"no stack in {self.outdir} exports {export_name!r}")

    def asset_folder(self, stack: Stack, object_key: str) -> Path:
        """The folder under ``cdk.out`` whose zip is uploaded as ``object_key`` (``<hash>.zip``)."""
        asset_hash = object_key.removesuffix(".zip")
        entry = stack.assets.get(asset_hash)
        if entry is None:
            raise AssemblyError(f"{stack.name}: no file asset {asset_hash} in its asset manifest")
        source = entry["source"]
        folder = self.outdir / source["path"]
        if source.get("packaging") != "zip" or not folder.is_dir():
            raise AssemblyError(
                f"{stack.name}: asset {asset_hash} is not a folder packaged as zip "
                f"({source.get('packaging')}: {source['path']})"
            )
        return folder


def _deployment_order(stacks: dict[str, Stack]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(artifact_id: str) -> None:
        if artifact_id in order:
            return
        if artifact_id in visiting:
            raise AssemblyError(f"stack dependency cycle through {artifact_id}")
        visiting.add(artifact_id)
        for dep in stacks[artifact_id].dependencies:
            visit(dep)
        visiting.discard(artifact_id)
        order.append(artifact_id)

    for artifact_id in stacks:
        visit(artifact_id)
    return order
