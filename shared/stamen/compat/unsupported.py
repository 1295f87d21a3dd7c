"""Flower 1.42 public names that Stamen does not provide, each with the reason.

A public module's `__getattr__` (from `unsupported_attributes`) raises
`UnsupportedFeatureError` for these, so that `from stamen.common.logger import
start_log_uploader` (or the same line under `--flwr-compat`) says why, instead of a bare
"cannot import name". `UNSUPPORTED_MEMBERS` lists the methods, attributes and parameters
of supported classes that Stamen leaves out, keyed by our class's name ("__init__": its
constructor is Stamen's own). `tests/unit/test_flower_conformance.py`
checks every entry against the list of Flower's public names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stamen.common.errors import UserInputError

__all__ = [
    "UNSUPPORTED",
    "UNSUPPORTED_MEMBERS",
    "UnsupportedFeatureError",
    "unsupported_attributes",
]

_GRPC_BIDI = (
    "it belongs to Flower's pre-1.8 gRPC bidirectional protocol (start_client/start_server), "
    "which Stamen does not speak"
)
_START = (
    "the long-running start_* entry points are deprecated in Flower; run a ClientApp with "
    "stamen-supernode (or stamen-simulation) and a ServerApp with stamen-serverapp"
)
_FAB = (
    "it is Flower's FAB/pyproject plumbing for `flwr run`; Stamen's CLIs read an app's "
    "pyproject themselves"
)
_LOG_PLUMBING = (
    "it is Flower's own console/log-upload plumbing; Stamen's CLIs set up logging, and apps "
    "use `log` or the standard logging module"
)
_SIM_PROCESS = (
    "it is Flower's SimulationIo process plumbing; stamen.simulation runs the whole "
    "federation in process: use run_simulation(...) or stamen-simulation"
)

UNSUPPORTED: dict[str, dict[str, str]] = {
    "stamen.common": {
        "ClientMessage": _GRPC_BIDI,
        "ServerMessage": _GRPC_BIDI,
        "ReconnectIns": _GRPC_BIDI,
        "DisconnectRes": _GRPC_BIDI,
        "EventType": "Flower's telemetry events; Stamen sends no telemetry",
        "event": "Flower's telemetry events; Stamen sends no telemetry",
        "GRPC_MAX_MESSAGE_LENGTH": (
            "Stamen streams arrays in chunks, so an app never meets a gRPC message-size limit"
        ),
        "now": "Flower's internal clock helper; use datetime.now(timezone.utc)",
    },
    "stamen.common.typing": {
        "ClientMessage": _GRPC_BIDI,
        "ServerMessage": _GRPC_BIDI,
        "ReconnectIns": _GRPC_BIDI,
        "DisconnectRes": _GRPC_BIDI,
    },
    "stamen.common.logger": {
        name: _LOG_PLUMBING
        for name in (
            "ConsoleHandler",
            "CustomHTTPHandler",
            "configure_superlink_log_file",
            "console_handler",
            "flush_logs",
            "mirror_output_to_queue",
            "print_json_error",
            "redirect_output",
            "restore_output",
            "set_logger_propagation",
            "start_log_uploader",
            "stop_log_uploader",
            "update_console_handler",
        )
    },
    "stamen.common.config": {
        name: _FAB
        for name in (
            "AppMetadata",
            "check_pattern_list_value",
            "fuse_dicts",
            "get_app_presentation_metadata",
            "get_fab_config",
            "get_fused_config",
            "get_fused_config_from_dir",
            "get_fused_config_from_fab",
            "get_metadata_from_config",
            "get_project_config",
            "get_project_dir",
            "parse_config_args",
            "validate_config",
            "validate_fields_in_config",
        )
    },
    "stamen.client": {"start_client": _START, "start_numpy_client": _START},
    "stamen.server": {
        "start_server": _START,
        "Server": (
            "a custom Server drives Flower's own round loop; give the strategy, config and "
            "client manager to ServerApp (or ServerAppComponents) instead"
        ),
    },
    "stamen.simulation": {
        "SimulationIoConnection": _SIM_PROCESS,
        "run_simulation_process": _SIM_PROCESS,
        "start_simulation": (
            "the Ray-based legacy entry point, deprecated in Flower; use "
            "run_simulation(server_app=..., client_app=..., num_supernodes=...)"
        ),
    },
}

_INFLATABLE = (
    "Flower's own object serialization; Stamen's codec encodes records outside the records"
)
_TASK_IDS = "Flower's experimental task ids; Stamen addresses messages to nodes only"

UNSUPPORTED_MEMBERS: dict[str, dict[str, str]] = {
    **{
        record: {
            m: _INFLATABLE for m in ("children", "deflate", "inflate", "is_dirty", "object_id")
        }
        for record in ("ArrayRecord", "ConfigRecord", "Message", "MetricRecord", "RecordDict")
    },
    "Array": {
        **{m: _INFLATABLE for m in ("children", "deflate", "inflate", "is_dirty", "object_id")},
        "slice_array": _INFLATABLE,
    },
    "Message": {
        **{m: _INFLATABLE for m in ("children", "deflate", "inflate", "is_dirty", "object_id")},
        "dst_task_id": _TASK_IDS,
    },
    "Metadata": {"src_task_id": _TASK_IDS, "dst_task_id": _TASK_IDS},
    "Context": {"series_id": "Flower's run series; a Stamen run stands alone"},
    "Grid": {"set_run": "the runner binds a Grid to its run; an app never calls it"},
    "ClientProxy": {
        "__init__": (
            "the ClientManager makes a ClientProxy for each node the Grid reports; an app "
            "receives them and never builds one"
        ),
        "reconnect": _GRPC_BIDI,
    },
}


class UnsupportedFeatureError(UserInputError, ImportError):
    """A Flower name that Stamen deliberately does not provide.

    An ImportError, so `from module import name` shows this message rather than its own.
    """

    def __init__(self, module: str, name: str, reason: str) -> None:
        super().__init__(f"{module}.{name} is not supported by Stamen: {reason}")
        self.module = module
        self.feature = name
        self.reason = reason


def unsupported_attributes(module: str) -> Callable[[str], Any]:
    """The module `__getattr__` of a public module: names in `UNSUPPORTED[module]` raise
    `UnsupportedFeatureError`; any other unknown name is an AttributeError as usual."""
    listed = UNSUPPORTED.get(module, {})

    def __getattr__(name: str) -> Any:
        reason = listed.get(name)
        if reason is not None:
            raise UnsupportedFeatureError(module, name, reason)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
