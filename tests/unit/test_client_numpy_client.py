"""Client defaults and the NumPyClient adapter: conversions, contexts, return checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from stamen.client import (
    Client,
    Code,
    EvaluateIns,
    FitIns,
    GetParametersIns,
    GetPropertiesIns,
    NDArrays,
    NumPyClient,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.context import Context
from stamen.common.errors import ClientAppError

PARAMS = ndarrays_to_parameters([np.arange(6, dtype=np.float64).reshape(2, 3)])


def test_client_defaults_say_not_implemented() -> None:
    client = Client()
    assert client.get_properties(GetPropertiesIns({})).status.code == (
        Code.GET_PROPERTIES_NOT_IMPLEMENTED
    )
    assert client.get_parameters(GetParametersIns({})).status.code == (
        Code.GET_PARAMETERS_NOT_IMPLEMENTED
    )
    fit = client.fit(FitIns(PARAMS, {}))
    assert (fit.status.code, fit.num_examples) == (Code.FIT_NOT_IMPLEMENTED, 0)
    assert "fit" in fit.status.message
    assert client.evaluate(EvaluateIns(PARAMS, {})).status.code == Code.EVALUATE_NOT_IMPLEMENTED
    assert client.to_client() is client


def test_context_is_settable_and_missing_context_is_clear() -> None:
    client, numpy_client = Client(), NumPyClient()
    with pytest.raises(ClientAppError, match="no context"):
        _ = client.context
    context = Context(run_id=1, node_id=2, node_config={})
    client.context = context
    numpy_client.set_context(context)
    assert client.get_context() is context
    assert numpy_client.context is context


def test_adapter_shares_the_numpy_clients_context() -> None:
    numpy_client = NumPyClient()
    adapter = numpy_client.to_client()
    context = Context(run_id=1, node_id=2, node_config={})
    adapter.set_context(context)
    assert numpy_client.context is context
    assert adapter.context is context


def test_unoverridden_numpy_methods_say_not_implemented() -> None:
    class OnlyFit(NumPyClient):
        def fit(
            self, parameters: NDArrays, config: dict[str, Scalar]
        ) -> tuple[NDArrays, int, dict[str, Scalar]]:
            return [p * 2 for p in parameters], 3, {"lr": config["lr"]}

    client = OnlyFit().to_client()
    res = client.fit(FitIns(PARAMS, {"lr": 0.5}))
    assert (res.status.code, res.num_examples, res.metrics) == (Code.OK, 3, {"lr": 0.5})
    np.testing.assert_array_equal(
        parameters_to_ndarrays(res.parameters)[0], np.arange(6).reshape(2, 3) * 2
    )
    assert client.evaluate(EvaluateIns(PARAMS, {})).status.code == Code.EVALUATE_NOT_IMPLEMENTED
    assert client.get_parameters(GetParametersIns({})).status.code == (
        Code.GET_PARAMETERS_NOT_IMPLEMENTED
    )


def test_evaluate_accepts_numpy_numbers() -> None:
    class Eval(NumPyClient):
        def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> Any:
            return np.float32(0.25), np.int64(8), {}

    res = Eval().to_client().evaluate(EvaluateIns(PARAMS, {}))
    assert (res.loss, res.num_examples) == (0.25, 8)
    assert type(res.loss) is float
    assert type(res.num_examples) is int


class Returns(NumPyClient):
    def __init__(self, value: Any) -> None:
        self.value = value

    def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> Any:
        return self.value

    def evaluate(self, parameters: NDArrays, config: dict[str, Scalar]) -> Any:
        return self.value

    def get_parameters(self, config: dict[str, Scalar]) -> Any:
        return self.value

    def get_properties(self, config: dict[str, Scalar]) -> Any:
        return self.value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "fit must return a tuple \\(parameters: list of numpy arrays, .* got NoneType"),
        (([], 1), "got a tuple of 2 \\(list, int\\)"),
        ((np.ones(2), 1, {}), "ndarray as item 0 \\(parameters\\); expected a list"),
        (([], 1.5, {}), "float as item 1 \\(num_examples\\); expected an int"),
        (([], True, {}), "bool as item 1 \\(num_examples\\)"),
        (([], 1, None), "NoneType as item 2 \\(metrics\\); expected a dict"),
    ],
)
def test_fit_wrong_returns_say_what_was_expected(value: Any, message: str) -> None:
    with pytest.raises(ClientAppError, match=message):
        Returns(value).to_client().fit(FitIns(PARAMS, {}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((1.0, 2), "evaluate must return a tuple \\(loss: float, num_examples: int"),
        (("0.1", 2, {}), "str as item 0 \\(loss\\); expected a float"),
        ((0.1, 2, []), "list as item 2 \\(metrics\\)"),
    ],
)
def test_evaluate_wrong_returns_say_what_was_expected(value: Any, message: str) -> None:
    with pytest.raises(ClientAppError, match=message):
        Returns(value).to_client().evaluate(EvaluateIns(PARAMS, {}))


def test_query_methods_check_their_returns() -> None:
    client = Returns(7).to_client()
    with pytest.raises(ClientAppError, match="get_parameters must return a list"):
        client.get_parameters(GetParametersIns({}))
    with pytest.raises(ClientAppError, match="get_properties must return a dict, got int"):
        client.get_properties(GetPropertiesIns({}))
