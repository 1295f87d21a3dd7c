"""Records, messages and app lifespans behave as Flower 1.42's do.

`tests/golden/record_scenarios.py` holds small programs; `gen_record_behaviour.py` ran
them under Flower and committed what each returned or raised
(`data/flower_record_behaviour.json`). Here the same programs run on Stamen's names.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(__file__).parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))
from record_scenarios import NAMES, SCENARIOS, run_scenario  # noqa: E402

FACTS = json.loads((GOLDEN / "data" / "flower_record_behaviour.json").read_text())

KNOWN_DIFFERENCES = {
    "view_sees_later_writes": (
        "Stamen's record views are live both ways; Flower's view is a copy taken when the "
        "property is read, which misses later writes to the RecordDict"
    ),
}


def _namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {"np": np}
    for module, names in NAMES.items():
        loaded = importlib.import_module(f"stamen.{module}")
        namespace.update({name: getattr(loaded, name) for name in names})
    return namespace


def _json(outcome: dict[str, Any]) -> dict[str, Any]:
    """As the generator stored it (tuples become lists)."""
    return json.loads(json.dumps(outcome))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_behaves_as_flower(name: str) -> None:
    ours = _json(run_scenario(SCENARIOS[name], _namespace()))
    flower = FACTS["scenarios"][name]
    if name in KNOWN_DIFFERENCES:
        assert ours != flower, f"{name} now matches Flower: drop it from KNOWN_DIFFERENCES"
        return
    assert ours == flower


def test_the_golden_data_covers_every_scenario() -> None:
    assert set(FACTS["scenarios"]) == set(SCENARIOS)
    assert FACTS["flower_version"].startswith("1.42")
