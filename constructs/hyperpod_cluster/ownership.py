"""The value of the owner tag every cluster this construct creates carries, and the values earlier versions used.

The owner value must be the same whichever way the stacks are deployed: ``cdk deploy --all`` builds the
stacks at the root of the app, the pipeline builds them inside its deployment Stage, and both manage the very
same CloudFormation stacks. So the value is ``<stack name>/<construct path below the stack>``: the stack name
is pinned (``stacks/infrastructure.py``) and the path below the stack is the same in both trees.

Earlier versions used ``<stack name>/<node.addr>``, and ``node.addr`` hashes the *whole* path from the app
root, so it differed between the two trees. Clusters tagged that way must stay manageable: the handler adopts
them and its IAM conditions admit them (``legacy_owner_tag_value`` recomputes those values), and the first
update re-tags them with the current value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from aws_cdk import Stack

from constructs import Construct


def owner_tag_value(construct: Construct) -> str:
    """``<stack name>/<path of the construct below its stack>``, identical for direct and pipeline synth."""
    stack = Stack.of(construct)
    below = construct.node.path.removeprefix(stack.node.path).strip("/")
    if not below:
        raise ValueError("the owner tag names a construct inside a stack, not the stack itself")
    return f"{stack.stack_name}/{below}"


def address_of(path_components: Sequence[str]) -> str:
    """``node.addr`` of a construct at this path below the app root (constructs' ``addressOf``: sha1 over the
    ids of every scope from the root, whose id is empty, each followed by a newline, ``Default`` skipped,
    prefixed with ``c8``)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for component in ("", *path_components):
        if component == "Default":
            continue
        digest.update(component.encode())
        digest.update(b"\n")
    return "c8" + digest.hexdigest()


def legacy_owner_tag_value(stack_name: str, path_components: Sequence[str]) -> str:
    """The owner value versions before the path-based one wrote for a construct at ``path_components``."""
    return f"{stack_name}/{address_of(path_components)}"
