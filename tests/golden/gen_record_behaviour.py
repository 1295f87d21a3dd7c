"""What Flower 1.42's records, messages and app lifespans do on `record_scenarios.SCENARIOS`.

Run under Flower's python (`make golden`); writes `data/flower_record_behaviour.json`,
which `tests/unit/test_flower_behaviour.py` checks Stamen against.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import flwr
from record_scenarios import NAMES, SCENARIOS, run_scenario

OUT = Path(__file__).parent / "data" / "flower_record_behaviour.json"


def main() -> None:
    # Flower stamps a new instruction with the identity of the task that runs it.
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    namespace: dict[str, object] = {"np": np}
    for module, names in NAMES.items():
        loaded = importlib.import_module(f"flwr.{module}")
        namespace.update({name: getattr(loaded, name) for name in names})
    facts = {
        "flower_version": flwr.__version__,
        "scenarios": {name: run_scenario(code, namespace) for name, code in SCENARIOS.items()},
    }
    OUT.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {len(SCENARIOS)} scenarios", file=sys.stderr)


if __name__ == "__main__":
    main()
