"""Flower's module names in Stamen: what the conformance test cannot see from names alone."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from stamen.app import Context, Message, RecordDict
from stamen.clientapp import ClientApp
from stamen.common.errors import ConfigError
from stamen.compat.unsupported import UnsupportedFeatureError


def test_an_unsupported_flower_name_says_why_on_import() -> None:
    with pytest.raises(ImportError, match="not supported by Stamen: it is Flower's own console"):
        from stamen.common.logger import start_log_uploader  # noqa: F401
    with pytest.raises(UnsupportedFeatureError, match="run_simulation"):
        from stamen.simulation import start_simulation  # noqa: F401


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import stamen.common
    import stamen.server

    assert not hasattr(stamen.server, "no_such_name")
    assert not hasattr(stamen.common, "no_such_name")


def test_log_writes_to_the_stamen_logger(caplog: pytest.LogCaptureFixture) -> None:
    from stamen.common import log

    with caplog.at_level(logging.INFO, logger="stamen"):
        log(logging.INFO, "round %d", 3)
    assert ("stamen", logging.INFO, "round 3") in caplog.record_tuples


def test_configure_adds_a_log_file_and_refuses_a_log_server(tmp_path: Path) -> None:
    from stamen.common.logger import FLOWER_LOGGER, configure, log

    target = tmp_path / "app.log"
    configure("node-7", filename=str(target))
    try:
        log(logging.WARNING, "hello")
    finally:
        handler = FLOWER_LOGGER.handlers[-1]
        FLOWER_LOGGER.removeHandler(handler)
        handler.close()
    assert "node-7 | WARNING stamen" in target.read_text()
    with pytest.raises(ConfigError, match="remote"):
        configure("x", host="http://example.invalid")


def test_mods_wrap_in_order_with_make_ffn() -> None:
    from stamen.client.mod import make_ffn

    calls: list[str] = []

    def mod(name: str):
        def wrapped(message, context, call_next):
            calls.append(f"{name}>")
            reply = call_next(message, context)
            calls.append(f"<{name}")
            return reply

        return wrapped

    def app(message, context):
        calls.append("app")
        return message.create_reply(RecordDict())

    ffn = make_ffn(app, [mod("a"), mod("b")])
    ffn(Message(RecordDict(), 1, "train"), Context(run_id=1, node_id=1, node_config={}))
    assert calls == ["a>", "b>", "app", "<b", "<a"]


def test_a_lifespan_that_never_yields_fails_the_message_not_the_node() -> None:
    app = ClientApp()

    @app.lifespan()
    def lifespan(context):
        return None

    @app.train()
    def train(message, context):
        return message.create_reply(RecordDict())

    reply = app(Message(RecordDict(), 1, "train"), Context(run_id=1, node_id=1, node_config={}))
    assert reply.has_error()
    assert "must yield" in reply.error.reason


def test_task_ids_are_refused() -> None:
    with pytest.raises(TypeError, match="dst_task_id"):
        Message(RecordDict(), 1, "train", dst_task_id=3)  # type: ignore[call-overload]


def test_arrayrecord_keeps_a_torch_state_dicts_names() -> None:
    torch = pytest.importorskip("torch")
    from stamen.app import ArrayRecord

    state = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
    record = ArrayRecord(torch_state_dict=state)
    assert list(record) == ["w", "b"]
    assert record.to_torch_state_dict()["w"].sum().item() == 4.0
    assert np.array_equal(record.to_numpy_ndarrays()[1], np.zeros(2, np.float32))


def test_run_simulation_refuses_an_unknown_backend() -> None:
    from stamen.server import ServerApp
    from stamen.simulation import run_simulation

    with pytest.raises(ConfigError, match="backend_name 'dask'"):
        run_simulation(ServerApp(), ClientApp(), 2, "dask")
    with pytest.raises(TypeError, match=r"pass backend_config=\.\.\. .* by keyword"):
        run_simulation(ServerApp(), ClientApp(), 2, {"num_workers": 1})  # type: ignore[arg-type]
