"""CloudFormation intrinsic functions, resolved against what a rehearsal created.

Only what CDK templates use for values is supported (Ref, Fn::GetAtt, Fn::ImportValue, Fn::Join,
Fn::Select, Fn::Split, Fn::Sub, and the pseudo parameters). Anything else raises
``Unresolvable`` naming the template path, so a construct that starts emitting, say, ``Fn::If``
makes the rehearsal fail loudly instead of passing an unresolved dict to a handler.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::Region",
        "AWS::Partition",
        "AWS::URLSuffix",
        "AWS::StackName",
        "AWS::StackId",
        "AWS::NotificationARNs",
    }
)
_NO_VALUE = object()  # Ref AWS::NoValue: the enclosing key or list item disappears
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class Unresolvable(ValueError):
    """A value the rehearsal cannot compute; the message names where it is in the template."""


class Resolver:
    """Resolves one stack's values. The callbacks create what they are asked for (``moto_stacks``)."""

    def __init__(
        self,
        *,
        pseudo: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
        import_value: Callable[[str], Any],
    ):
        self.pseudo, self.ref, self.get_att, self.import_value = pseudo, ref, get_att, import_value

    def resolve(self, value: Any, path: str = "") -> Any:
        result = self._resolve(value, path)
        if result is _NO_VALUE:
            raise Unresolvable(f"{path}: Ref AWS::NoValue where a value is required")
        return result

    def _resolve(self, value: Any, path: str) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg, path)
            if key.startswith("Fn::"):
                return self._function(key, arg, f"{path}.{key}")
        resolved = {k: self._resolve(v, f"{path}.{k}") for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise Unresolvable(f"{path}: Ref takes a name, got {name!r}")
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name.startswith("AWS::"):
            if name not in self.pseudo:
                raise Unresolvable(f"{path}: pseudo parameter {name} is not supported by the rehearsal")
            return self.pseudo[name]
        return self.ref(name)

    def _function(self, name: str, arg: Any, path: str) -> Any:
        if name == "Fn::GetAtt":
            logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.get_att(logical_id, self.resolve(attribute, path))
        if name == "Fn::ImportValue":
            return self.import_value(self.resolve(arg, path))
        if name == "Fn::Join":
            delimiter, items = arg
            parts = self.resolve(items, path)
            _all_strings(parts, path)
            return delimiter.join(parts)
        if name == "Fn::Select":
            index, items = self.resolve(arg, path)
            try:
                return items[int(index)]
            except (IndexError, ValueError, TypeError):
                raise Unresolvable(f"{path}: cannot select item {index!r} of {items!r}") from None
        if name == "Fn::Split":
            delimiter, text = arg
            text = self.resolve(text, path)
            _all_strings([text], path)
            return text.split(delimiter)
        if name == "Fn::Sub":
            return self._sub(arg, path)
        raise Unresolvable(f"{path}: {name} is not supported by the rehearsal")

    def _sub(self, arg: Any, path: str) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        variables = {k: self.resolve(v, f"{path}.{k}") for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif name in PSEUDO_PARAMETERS:
                value = self._ref(name, path)
            elif "." in name:
                value = self.get_att(*name.split(".", 1))
            else:
                value = self.ref(name)
            _all_strings([value], path)
            return value

        return _SUB_VARIABLE.sub(substitute, template)


def _all_strings(values: list[Any], path: str) -> None:
    for value in values:
        if not isinstance(value, str):
            raise Unresolvable(f"{path}: expected a string, got {value!r}")


def cfn_strings(value: Any) -> Any:
    """What a custom resource handler receives: CloudFormation turns every scalar property into a string."""
    if isinstance(value, dict):
        return {k: cfn_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [cfn_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value
