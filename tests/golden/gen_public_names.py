"""Flower 1.42's public names, per public module, with their parameters.

Run under Flower's python (`make golden`); writes `data/flower_public_names.json`, which
`tests/unit/test_flower_conformance.py` checks Stamen against.

A module's public names are its `__all__`. Where Flower declares none, they are the
functions, classes and variables the module defines itself, or, for a module that only
re-exports, what it imports from flwr. For each name: its kind, the parameters
of a function (of `__init__` for a class), and a class's public methods and properties.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

import flwr

MODULES = [
    "flwr.app",
    "flwr.clientapp",
    "flwr.clientapp.mod",
    "flwr.serverapp",
    "flwr.serverapp.strategy",
    "flwr.serverapp.strategy.strategy_utils",
    "flwr.client",
    "flwr.client.mod",
    "flwr.common",
    "flwr.common.typing",
    "flwr.common.logger",
    "flwr.common.config",
    "flwr.server",
    "flwr.server.strategy",
    "flwr.server.workflow",
    "flwr.server.client_proxy",
    "flwr.simulation",
]

OUT = Path(__file__).parent / "data" / "flower_public_names.json"


def public_names(module: Any) -> list[str]:
    declared = getattr(module, "__all__", None)
    if declared is not None:
        return sorted(declared)
    tree = ast.parse(Path(module.__file__).read_text())
    own: list[str] = []
    reexported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            own.append(node.name)
        elif isinstance(node, ast.Assign):
            own.extend(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom) and (node.level or "flwr" in (node.module or "")):
            reexported.extend(alias.asname or alias.name for alias in node.names)
    names = own or reexported
    return sorted(n for n in names if not n.startswith("_"))


def parameters(fn: Any) -> list[dict[str, Any]] | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return [
        {
            "name": p.name,
            "kind": p.kind.name,
            "default": p.default is not inspect.Parameter.empty,
        }
        for p in signature.parameters.values()
        if p.name != "self"
    ]


def describe_class(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("flwr"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in members:
                continue
            if isinstance(value, property):
                members[name] = {"kind": "property"}
            elif isinstance(value, staticmethod | classmethod):
                members[name] = {"kind": "method", "parameters": parameters(value.__func__)}
                if isinstance(value, classmethod):
                    members[name]["parameters"] = members[name]["parameters"][1:]
            elif inspect.isfunction(value):
                members[name] = {"kind": "method", "parameters": parameters(value)}
    init = cls.__init__ if "__init__" in _own_dicts(cls) else None
    return {
        "kind": "class",
        "parameters": parameters(init) if init is not None else None,
        "members": dict(sorted(members.items())),
    }


def _own_dicts(cls: type) -> set[str]:
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("flwr"):
            found.update(vars(klass))
    return found


def describe(value: Any) -> dict[str, Any]:
    if inspect.ismodule(value):
        return {"kind": "module"}
    if inspect.isclass(value):
        return describe_class(value)
    if callable(value) and inspect.isroutine(value):
        return {"kind": "function", "parameters": parameters(value)}
    return {"kind": "value"}


def main() -> None:
    facts: dict[str, Any] = {"flower_version": flwr.__version__, "modules": {}}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names: dict[str, Any] = {}
        for name in public_names(module):
            value = getattr(module, name)
            if isinstance(value, TypeVar):
                continue  # a type variable is no API
            names[name] = describe(value)
        facts["modules"][module_name] = names
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(facts, indent=0, sort_keys=True) + "\n")
    total = sum(len(v) for v in facts["modules"].values())
    print(f"{OUT}: {total} names in {len(MODULES)} modules", file=sys.stderr)


if __name__ == "__main__":
    main()
