"""Every public name of Flower 1.42 exists in Stamen, with compatible parameters.

The facts come from `tests/golden/data/flower_public_names.json` (written by
`tests/golden/gen_public_names.py` under Flower's python): for each public module
`flwr.X`, its names, and for each function or class its parameters and public members.
`stamen.X` must have each name, and a call that Flower's signature accepts must be
accepted by ours: the same parameter names in the same order, keyword-only where Flower's
are, a default wherever Flower has one. Names Stamen does not support are listed, with
the reason, in `stamen.compat.unsupported`: importing one raises an error giving it.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from stamen.compat.unsupported import UNSUPPORTED, UNSUPPORTED_MEMBERS, UnsupportedFeatureError

FACTS = json.loads(
    (Path(__file__).parents[1] / "golden" / "data" / "flower_public_names.json").read_text()
)

# Names being added in parallel, with the issue that adds them (none at present). The
# test fails for a pending name that exists, so the list cannot go stale.
PENDING: dict[str, str] = {}

CASES = [
    (flwr_module.replace("flwr", "stamen", 1), name, fact)
    for flwr_module, names in FACTS["modules"].items()
    for name, fact in names.items()
]


def _import(module: str) -> Any:
    """The module, or None where it does not exist (yet)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise


def _incompatibility(
    ours: Any, theirs: list[dict[str, Any]] | None, left_out: Mapping[str, str]
) -> str | None:
    """Why a call that Flower's parameters accept might fail against ours (None: it won't).
    Flower's parameters named in `left_out` are unsupported on purpose and not compared."""
    if theirs is None:
        return None
    theirs = [p for p in theirs if p["name"] not in left_out]
    try:
        signature = inspect.signature(ours)
    except (TypeError, ValueError):
        return None
    params = [p for p in signature.parameters.values() if p.name != "self"]
    kinds = {p["kind"] for p in theirs}
    if kinds <= {"VAR_POSITIONAL", "VAR_KEYWORD"}:
        return None  # Flower's is (*args, **kwargs): it promises nothing to compare
    by_name = {p.name: p for p in params}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    position = 0
    for fact in theirs:
        name, kind = fact["name"], fact["kind"]
        if kind in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            if not any(p.kind.name == kind for p in params):
                return f"Flower takes {'*' if kind == 'VAR_POSITIONAL' else '**'}{name}"
            continue
        if kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD"):
            if position >= len(positional) or (
                kind == "POSITIONAL_OR_KEYWORD" and positional[position].name != name
            ):
                return f"positional parameter {position} should be {name!r}"
            ours_p = positional[position]
            position += 1
        else:
            ours_p = by_name.get(name)  # type: ignore[assignment]
            if ours_p is None or ours_p.kind == ours_p.POSITIONAL_ONLY:
                return f"no keyword parameter {name!r}"
        if kind != "POSITIONAL_ONLY" and ours_p.kind == ours_p.POSITIONAL_ONLY:
            return f"{name!r} must be accepted as a keyword"
        if fact["default"] and ours_p.default is inspect.Parameter.empty:
            return f"{name!r} needs a default"
    flower_names = {p["name"] for p in theirs}
    for p in params:
        required = p.default is inspect.Parameter.empty and p.kind not in (
            p.VAR_POSITIONAL,
            p.VAR_KEYWORD,
        )
        if required and p.name not in flower_names:
            return f"our parameter {p.name!r} is required; Flower has no such parameter"
    return None


def _check(ours: Any, fact: dict[str, Any]) -> list[str]:
    problems = []
    kind = fact["kind"]
    if kind == "module" and not inspect.ismodule(ours):
        problems.append("is not a module")
    if kind == "class":
        if not inspect.isclass(ours):
            return ["is not a class"]
        left_out = UNSUPPORTED_MEMBERS.get(ours.__name__, {})
        if "__init__" not in left_out:
            why = _incompatibility(ours, fact["parameters"], left_out)
            if why:
                problems.append(f"constructor: {why}")
        for member, member_fact in fact["members"].items():
            if member in left_out:
                continue
            if not hasattr(ours, member):
                problems.append(f"has no member {member!r}")
            elif member_fact["kind"] == "method":
                why = _incompatibility(getattr(ours, member), member_fact["parameters"], {})
                if why:
                    problems.append(f".{member}(): {why}")
    if kind == "function":
        if not callable(ours):
            return ["is not callable"]
        why = _incompatibility(ours, fact["parameters"], {})
        if why:
            problems.append(why)
    return problems


@pytest.mark.parametrize(("module", "name", "fact"), CASES, ids=[f"{m}.{n}" for m, n, _ in CASES])
def test_flower_name(module: str, name: str, fact: dict[str, Any]) -> None:
    qualified = f"{module}.{name}"
    loaded = _import(module)
    if qualified in PENDING:
        present = (loaded is not None and name in vars(loaded)) or _resolves(loaded, name)
        assert not present, f"{qualified} exists now: remove it from PENDING"
        return
    assert loaded is not None, f"module {module} is missing"
    reason = UNSUPPORTED.get(module, {}).get(name)
    if reason is not None:
        with pytest.raises(UnsupportedFeatureError, match="not supported") as raised:
            getattr(loaded, name)
        assert reason in str(raised.value)
        return
    ours = getattr(loaded, name, None)
    assert ours is not None, f"{qualified} is missing"
    problems = _check(ours, fact)
    assert not problems, f"{qualified}: " + "; ".join(problems)


def _resolves(module: Any, name: str) -> bool:
    if module is None:
        return False
    try:
        getattr(module, name)
    except (AttributeError, ImportError):
        return False
    return True


def test_every_unsupported_name_is_a_flower_name() -> None:
    flower = {(m.replace("flwr", "stamen", 1), n) for m, ns in FACTS["modules"].items() for n in ns}
    listed = {(m, n) for m, names in UNSUPPORTED.items() for n in names}
    assert listed <= flower, f"not Flower 1.42 public names: {sorted(listed - flower)}"
    assert not {f"{m}.{n}" for m, n in listed} & set(PENDING)


def test_every_unsupported_member_is_a_flower_member() -> None:
    flower: dict[str, set[str]] = {}
    for names in FACTS["modules"].values():
        for fact in names.values():
            if fact["kind"] == "class":
                members = set(fact["members"]) | {p["name"] for p in fact["parameters"] or []}
                flower.setdefault("*", set()).update(members)
    for cls, members in UNSUPPORTED_MEMBERS.items():
        unknown = set(members) - flower["*"] - {"__init__"}
        assert not unknown, f"{cls}: not members of a Flower 1.42 class: {sorted(unknown)}"


def test_flower_facts_are_for_1_42() -> None:
    assert FACTS["flower_version"].startswith("1.42")
