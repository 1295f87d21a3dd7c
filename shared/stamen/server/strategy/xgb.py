"""XGBoost tree bagging on xgboost's JSON model format, for both strategy APIs.

Bagging appends the trees of each client's model (trained this round from the global
model) to the global model: tree ids, `num_trees`, `iteration_indptr` and `tree_info`
follow. Pure JSON work: the server needs no xgboost.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["aggregate_bagging"]


def aggregate_bagging(bst_prev_org: bytes | None, bst_curr_org: bytes) -> bytes:
    """The global model `bst_prev_org` with the new trees of `bst_curr_org` appended.

    An empty or missing global model is replaced by the client's model.
    """
    if not bst_prev_org:
        return bst_curr_org
    previous = json.loads(bytearray(bst_prev_org))
    current = json.loads(bytearray(bst_curr_org))
    model = _model(previous)
    tree_num_prev = int(model["gbtree_model_param"]["num_trees"])
    new_trees = int(_model(current)["gbtree_model_param"]["num_parallel_tree"])
    model["gbtree_model_param"]["num_trees"] = str(tree_num_prev + new_trees)
    model["iteration_indptr"].append(model["iteration_indptr"][-1] + new_trees)
    trees = _model(current)["trees"]
    for index in range(new_trees):
        trees[index]["id"] = tree_num_prev + index
        model["trees"].append(trees[index])
        model["tree_info"].append(0)
    # json.dumps' default separators: byte for byte what Flower sends.
    return bytes(json.dumps(previous), "utf-8")


def _model(booster: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = booster["learner"]["gradient_booster"]["model"]
    return model
