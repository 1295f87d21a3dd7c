"""ClientApp: both styles, dispatch of every message type, and error replies."""

from __future__ import annotations

import logging
from typing import Any, cast

import numpy as np
import pytest
from stamen.client import (
    Client,
    ClientApp,
    ClientAppCallable,
    Code,
    FitIns,
    FitRes,
    NDArrays,
    NumPyClient,
    Scalar,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.context import Context
from stamen.common.legacy import (
    EvaluateIns,
    GetParametersIns,
    GetPropertiesIns,
    evaluateins_to_recorddict,
    fitins_to_recorddict,
    getparametersins_to_recorddict,
    getpropertiesins_to_recorddict,
    recorddict_to_evaluateres,
    recorddict_to_fitres,
    recorddict_to_getparametersres,
    recorddict_to_getpropertiesres,
)
from stamen.common.message import ErrorCode, Message
from stamen.common.records import ConfigRecord, MetricRecord, RecordDict


def make_context(node_id: int = 7, **node_config: Any) -> Context:
    return Context(run_id=3, node_id=node_id, node_config=node_config)


def instruction(message_type: str, content: RecordDict | None = None) -> Message:
    return Message(content or RecordDict(), dst_node_id=7, message_type=message_type)


def fit_message(value: float = 1.0, **config: Scalar) -> Message:
    params = ndarrays_to_parameters([np.full(3, value, dtype=np.float32)])
    return instruction("train", fitins_to_recorddict(FitIns(params, dict(config))))


class AddClient(NumPyClient):
    """Adds config["delta"] to every array and counts its calls in the context state."""

    def fit(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[NDArrays, int, dict[str, Scalar]]:
        state = self.context.state
        fits = state["counter"]["fits"] if "counter" in state else 0
        state["counter"] = MetricRecord({"fits": cast(int, fits) + 1})
        delta = float(config.get("delta", 1.0))
        return [p + delta for p in parameters], 10, {"node": self.context.node_id}

    def evaluate(
        self, parameters: NDArrays, config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        return float(parameters[0].sum()), 5, {"acc": 0.5}

    def get_parameters(self, config: dict[str, Scalar]) -> NDArrays:
        return [np.arange(4, dtype=np.int64)]

    def get_properties(self, config: dict[str, Scalar]) -> dict[str, Scalar]:
        return {"asked": str(config.get("what")), "cores": 2}


def numpy_app() -> ClientApp:
    def client_fn(context: Context) -> Client:
        return AddClient().to_client()

    return ClientApp(client_fn=client_fn)


def error_reason(reply: Message) -> str:
    assert reply.has_error()
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED
    return reply.error.reason


# --- client_fn style ---------------------------------------------------------------------


def test_train_runs_fit_and_replies_with_fitres() -> None:
    message = fit_message(1.0, delta=2.0)
    reply = numpy_app()(message, make_context())
    assert reply.metadata.reply_to_message_id == message.metadata.message_id
    res = recorddict_to_fitres(reply.content)
    assert res.status.code == Code.OK
    assert res.num_examples == 10
    assert res.metrics == {"node": 7}
    np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], np.full(3, 3.0))


def test_evaluate_runs_evaluate() -> None:
    params = ndarrays_to_parameters([np.ones(4)])
    content = evaluateins_to_recorddict(EvaluateIns(params, {}))
    reply = numpy_app()(instruction("evaluate", content), make_context())
    res = recorddict_to_evaluateres(reply.content)
    assert (res.loss, res.num_examples, res.metrics) == (4.0, 5, {"acc": 0.5})


def test_query_get_parameters() -> None:
    content = getparametersins_to_recorddict(GetParametersIns({}))
    reply = numpy_app()(instruction("query.get_parameters", content), make_context())
    res = recorddict_to_getparametersres(reply.content)
    assert res.status.code == Code.OK
    np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], np.arange(4))


def test_query_get_properties() -> None:
    content = getpropertiesins_to_recorddict(GetPropertiesIns({"what": "cpu"}))
    reply = numpy_app()(instruction("query.get_properties", content), make_context())
    res = recorddict_to_getpropertiesres(reply.content)
    assert res.properties == {"asked": "cpu", "cores": 2}


def test_numpy_client_returned_directly_is_adapted() -> None:
    app = ClientApp(client_fn=lambda context: AddClient())
    reply = app(fit_message(), make_context())
    assert recorddict_to_fitres(reply.content).num_examples == 10


def test_plain_client_subclass() -> None:
    class EchoClient(Client):
        def fit(self, ins: FitIns) -> FitRes:
            return FitRes(Status(), ins.parameters, 1, {"cfg": len(ins.config)})

    app = ClientApp(client_fn=lambda context: EchoClient())
    res = recorddict_to_fitres(app(fit_message(4.0, a=1), make_context()).content)
    assert res.metrics == {"cfg": 1}
    np.testing.assert_array_equal(parameters_to_ndarrays(res.parameters)[0], np.full(3, 4.0))
    # What the subclass does not implement answers with a "not implemented" status.
    content = getparametersins_to_recorddict(GetParametersIns({}))
    reply = app(instruction("query.get_parameters", content), make_context())
    status = recorddict_to_getparametersres(reply.content).status
    assert status.code == Code.GET_PARAMETERS_NOT_IMPLEMENTED


def test_context_state_mutations_are_visible_to_the_caller() -> None:
    app, context = numpy_app(), make_context()
    app(fit_message(), context)
    app(fit_message(), context)
    assert context.state["counter"] == MetricRecord({"fits": 2})


@pytest.mark.parametrize(("node_config", "expected_cid"), [({"partition-id": 4}, "4"), ({}, "7")])
def test_legacy_client_fn_gets_partition_id_else_node_id(
    node_config: dict[str, Any], expected_cid: str
) -> None:
    seen: list[str] = []

    def client_fn(cid):  # type: ignore[no-untyped-def]  # Flower's old untyped style
        seen.append(cid)
        return AddClient()

    ClientApp(client_fn=client_fn)(fit_message(), make_context(**node_config))
    assert seen == [expected_cid]


def test_legacy_client_fn_detected_by_str_annotation() -> None:
    seen: list[object] = []

    def client_fn(node: str) -> NumPyClient:
        seen.append(node)
        return AddClient()

    ClientApp(client_fn=client_fn)(fit_message(), make_context(node_id=12))
    assert seen == ["12"]


def test_client_fn_with_context_gets_the_context() -> None:
    seen: list[Context] = []

    def client_fn(ctx):  # type: ignore[no-untyped-def]
        seen.append(ctx)
        return AddClient()

    context = make_context()
    ClientApp(client_fn=client_fn)(fit_message(), context)
    assert seen == [context]


def test_client_fn_with_wrong_arity_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="one argument"):
        ClientApp(client_fn=lambda a, b: AddClient())  # type: ignore[arg-type]


# --- error replies -----------------------------------------------------------------------


def test_exception_in_fit_becomes_error_reply_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(NumPyClient):
        def fit(
            self, parameters: NDArrays, config: dict[str, Scalar]
        ) -> tuple[NDArrays, int, dict[str, Scalar]]:
            raise ValueError("the data loader is empty")

    app = ClientApp(client_fn=lambda context: Broken())
    with caplog.at_level(logging.ERROR, logger="stamen.client"):
        reply = app(fit_message(), make_context(node_id=9))
    reason = error_reason(reply)
    assert reason.startswith("ValueError: the data loader is empty\n")
    assert "Traceback (most recent call last)" in reason
    assert "in fit" in reason
    assert "stamen/client/" not in reason  # the dispatch machinery is left out
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.node_id == 9  # type: ignore[attr-defined]
    assert record.run_id == 3  # type: ignore[attr-defined]
    assert "node 9" in record.getMessage()


def test_exception_in_client_fn_becomes_error_reply() -> None:
    def client_fn(context: Context) -> Client:
        raise RuntimeError("no dataset for this node")

    reason = error_reason(ClientApp(client_fn=client_fn)(fit_message(), make_context()))
    assert "RuntimeError: no dataset for this node" in reason
    assert "in client_fn" in reason


def test_client_fn_returning_wrong_type() -> None:
    app = ClientApp(client_fn=lambda context: 42)  # type: ignore[arg-type]
    reason = error_reason(app(fit_message(), make_context()))
    assert "client_fn must return a Client or a NumPyClient" in reason
    assert "int" in reason


def test_client_fn_returning_the_class_says_so() -> None:
    app = ClientApp(client_fn=lambda context: AddClient)  # type: ignore[arg-type]
    reason = error_reason(app(fit_message(), make_context()))
    assert "the class AddClient itself" in reason


def test_fit_returning_wrong_tuple() -> None:
    class TwoTuple(NumPyClient):
        def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> Any:
            return parameters, 10

    reason = error_reason(ClientApp(client_fn=lambda c: TwoTuple())(fit_message(), make_context()))
    assert "NumPyClient.fit must return a tuple (parameters" in reason
    assert "a tuple of 2 (list, int)" in reason


def test_legacy_app_rejects_unknown_message_type() -> None:
    reason = error_reason(numpy_app()(instruction("query.weather"), make_context()))
    assert "'query.weather'" in reason


def test_system_exit_in_user_code_becomes_error_reply() -> None:
    class Quitter(NumPyClient):
        def fit(self, parameters: NDArrays, config: dict[str, Scalar]) -> Any:
            raise SystemExit(3)

    reason = error_reason(ClientApp(client_fn=lambda c: Quitter())(fit_message(), make_context()))
    assert reason.startswith("SystemExit: 3")


def test_keyboard_interrupt_is_not_swallowed() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        app(instruction("train"), make_context())


# --- decorator style ---------------------------------------------------------------------


def decorated_app() -> ClientApp:
    app = ClientApp()

    def answer(name: str) -> ClientAppCallable:
        def handler(message: Message, context: Context) -> Message:
            kind = message.metadata.message_type
            return message.create_reply(RecordDict({"who": ConfigRecord({name: kind})}))

        return handler

    app.train()(answer("train"))
    app.evaluate()(answer("evaluate"))
    app.query()(answer("query"))
    app.query("special")(answer("special"))
    return app


@pytest.mark.parametrize(
    ("message_type", "handler"),
    [
        ("train", "train"),
        ("evaluate", "evaluate"),
        ("query", "query"),
        ("query.anything", "query"),
        ("query.special", "special"),
    ],
)
def test_decorator_dispatch(message_type: str, handler: str) -> None:
    reply = decorated_app()(instruction(message_type), make_context())
    assert reply.content["who"] == ConfigRecord({handler: message_type})


def test_missing_handler_names_the_type() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return message.create_reply(RecordDict())

    reason = error_reason(app(instruction("evaluate"), make_context()))
    assert "no handler for 'evaluate' messages" in reason
    assert "registered: train" in reason


def test_handler_returning_no_message() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return message.content  # type: ignore[return-value]

    reason = error_reason(app(instruction("train"), make_context()))
    assert "returned RecordDict, not a Message" in reason


def test_handler_returning_a_message_that_is_no_reply() -> None:
    app = ClientApp()

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return Message(RecordDict(), dst_node_id=1, message_type="evaluate")

    reason = error_reason(app(instruction("evaluate"), make_context()))
    assert "not a reply" in reason


def test_handler_exception_and_state() -> None:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        context.state["seen"] = ConfigRecord({"yes": True})
        raise ZeroDivisionError("lr is zero")

    context = make_context()
    reason = error_reason(app(instruction("train"), context))
    assert reason.startswith("ZeroDivisionError: lr is zero")
    assert "in train" in reason
    assert context.state["seen"] == ConfigRecord({"yes": True})


def test_client_fn_and_decorators_together_is_a_definition_error() -> None:
    app = numpy_app()
    with pytest.raises(ValueError, match="client_fn"):
        app.train()


def test_duplicate_handler_is_a_definition_error() -> None:
    app = ClientApp()
    app.query()(lambda m, c: m)
    with pytest.raises(ValueError, match="already registered"):
        app.query()(lambda m, c: m)


def test_decorator_without_parentheses_and_async_handlers_are_rejected() -> None:
    app = ClientApp()

    async def train(message: Message, context: Context) -> Message:
        return message

    with pytest.raises(TypeError, match="parentheses"):
        app.train(train)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        app.train()(train)  # type: ignore[arg-type]


# --- mods --------------------------------------------------------------------------------


def test_mods_wrap_in_order_app_level_outermost() -> None:
    calls: list[str] = []

    def mod(name: str) -> Any:
        def wrapped(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
            calls.append(f"{name}>")
            reply = call_next(message, context)
            calls.append(f"<{name}")
            return reply

        return wrapped

    app = ClientApp(mods=[mod("a"), mod("b")])

    @app.train(mods=[mod("h")])
    def train(message: Message, context: Context) -> Message:
        calls.append("train")
        return message.create_reply(RecordDict())

    assert app(instruction("train"), make_context()).has_content()
    assert calls == ["a>", "b>", "h>", "train", "<h", "<b", "<a"]


def test_mod_can_short_circuit_and_a_bad_mod_becomes_error_reply() -> None:
    def deny(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        return message.create_reply(RecordDict({"denied": ConfigRecord({"ok": False})}))

    app = ClientApp(client_fn=lambda c: AddClient(), mods=[deny])
    assert "denied" in app(fit_message(), make_context()).content

    bad = ClientApp(client_fn=lambda c: AddClient(), mods=[lambda m, c, n: None])  # type: ignore[list-item,return-value]
    assert "a mod returned NoneType" in error_reason(bad(fit_message(), make_context()))


def test_stamen_app_reexports_the_common_names() -> None:
    import stamen.app

    assert stamen.app.Message is Message
    assert stamen.app.RecordDict is RecordDict
    assert set(stamen.app.__all__) >= {"Context", "ArrayRecord", "MetricRecord", "Array"}
