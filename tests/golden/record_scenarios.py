"""Small programs on records, messages and apps, run once under Flower 1.42 (by
`gen_record_behaviour.py`) and once under Stamen (by `tests/unit/test_flower_behaviour.py`);
their results must agree.

Each program sees `np` and the names in `NAMES`, imported from `flwr` or from `stamen`,
and sets `result` (JSON-able). A program that raises records the first builtin exception
class in its error's MRO (TypeError, ValueError, KeyError...).
"""

from __future__ import annotations

import builtins
from typing import Any

NAMES = {
    "app": [
        "Array",
        "ArrayRecord",
        "ConfigRecord",
        "Context",
        "Error",
        "Message",
        "MetricRecord",
        "RecordDict",
    ],
    "clientapp": ["ClientApp"],
    "serverapp": ["ServerApp"],
    "common.config": ["flatten_dict", "unflatten_dict"],
}

_INSTRUCTION = 'ins = Message(RecordDict(), dst_node_id=5, message_type="train", group_id="7")\n'

SCENARIOS: dict[str, str] = {
    "array_records_view_writes_through": (
        'rd = RecordDict()\nrd.array_records["m"] = ArrayRecord()\nresult = list(rd.keys())'
    ),
    "config_records_view_deletes_through": (
        'rd = RecordDict({"c": ConfigRecord({"a": 1}), "m": MetricRecord({"x": 1.0})})\n'
        'del rd.config_records["c"]\nresult = list(rd.keys())'
    ),
    "views_filter_by_kind": (
        'rd = RecordDict({"a": ArrayRecord(), "m": MetricRecord(), "c": ConfigRecord()})\n'
        "result = [list(rd.array_records), list(rd.metric_records), list(rd.config_records)]"
    ),
    "view_sees_later_writes": (
        "rd = RecordDict()\nview = rd.metric_records\n"
        'rd["m"] = MetricRecord({"x": 1})\nresult = "m" in view'
    ),
    "view_rejects_other_kind": 'rd = RecordDict()\nrd.array_records["x"] = ConfigRecord()',
    "recorddict_rejects_non_record": 'rd = RecordDict()\nrd["x"] = {"a": 1}',
    "recorddict_copy_is_shallow": (
        'rd = RecordDict({"c": ConfigRecord({"a": 1})})\ncp = rd.copy()\ncp["d"] = ConfigRecord()\n'
        'result = [list(rd), list(cp), cp["c"] is rd["c"]]'
    ),
    "configrecord_count_bytes": (
        'result = ConfigRecord({"a": 1, "bb": "xyz", "c": True, "d": [1, 2], "e": b"12",'
        ' "f": ["ab", "c"]}).count_bytes()'
    ),
    "metricrecord_count_bytes": 'result = MetricRecord({"a": 1, "bb": [1.0, 2.0]}).count_bytes()',
    "configrecord_keep_input_false": (
        'd = {"a": 1}\nrecord = ConfigRecord(d, keep_input=False)\nresult = [d, dict(record)]'
    ),
    "metricrecord_rejects_str": 'MetricRecord({"a": "x"})',
    "configrecord_rejects_mixed_list": 'ConfigRecord({"a": [1, "x"]})',
    "arrayrecord_from_list_keys": ("result = list(ArrayRecord([np.zeros(2), np.ones(3)]).keys())"),
    "arrayrecord_numpy_keyword": (
        "record = ArrayRecord(numpy_ndarrays=[np.arange(3.0)])\n"
        "result = [a.tolist() for a in record.to_numpy_ndarrays()]"
    ),
    "arrayrecord_from_numpy_ndarrays": (
        "record = ArrayRecord.from_numpy_ndarrays([np.arange(4, dtype=np.int32)])\n"
        "result = record.to_numpy_ndarrays()[0].tolist()"
    ),
    "arrayrecord_two_sources": "ArrayRecord([np.zeros(1)], numpy_ndarrays=[np.zeros(1)])",
    "arrayrecord_keep_input_false_empties_record": (
        "record = ArrayRecord([np.zeros(2)])\nrecord.to_numpy_ndarrays(keep_input=False)\n"
        "result = len(record)"
    ),
    "array_from_npy_parts": (
        "import io\nbuf = io.BytesIO()\n"
        "np.save(buf, np.arange(6, dtype=np.float32).reshape(2, 3))\n"
        'a = Array("float32", (2, 3), "numpy.ndarray", buf.getvalue())\n'
        "result = [a.numpy().tolist(), list(a.shape)]"
    ),
    "array_from_ndarray_keyword": (
        "result = Array(ndarray=np.arange(3, dtype=np.int64)).numpy().tolist()"
    ),
    "array_rejects_two_forms": "Array(np.zeros(2), ndarray=np.zeros(2))",
    "message_positional_instruction": (
        'm = Message(RecordDict(), 3, "train")\nmd = m.metadata\n'
        "result = [md.dst_node_id, md.message_type, md.group_id, md.reply_to_message_id,"
        " md.ttl, m.has_content(), m.has_error()]"
    ),
    "message_keyword_instruction": (
        'm = Message(content=RecordDict(), dst_node_id=3, message_type="evaluate",'
        ' group_id="g", ttl=10)\nresult = [m.metadata.group_id, m.metadata.ttl]'
    ),
    "message_query_with_action": (
        'result = Message(RecordDict(), 3, "query.stats").metadata.message_type'
    ),
    "message_needs_destination": "Message(RecordDict())",
    "message_needs_something": "Message()",
    "reply_takes_instruction_metadata": _INSTRUCTION
    + (
        "reply = Message(RecordDict(), reply_to=ins)\nmd = reply.metadata\n"
        "result = [md.dst_node_id == ins.metadata.src_node_id,"
        " md.src_node_id == ins.metadata.dst_node_id, md.group_id, md.message_type,"
        " md.reply_to_message_id == ins.metadata.message_id]"
    ),
    "error_reply_positional": _INSTRUCTION
    + (
        'reply = Message(Error(code=3, reason="boom"), reply_to=ins)\n'
        "result = [reply.has_error(), reply.error.code, reply.error.reason, reply.has_content()]"
    ),
    "reply_refuses_destination": _INSTRUCTION
    + "Message(RecordDict(), reply_to=ins, dst_node_id=3)",
    "reply_refuses_group": _INSTRUCTION + 'Message(RecordDict(), reply_to=ins, group_id="x")',
    "reply_ttl_never_outlives_instruction": (
        'ins = Message(RecordDict(), 5, "train", ttl=10)\n'
        "reply = ins.create_reply(RecordDict(), ttl=100)\nresult = reply.metadata.ttl <= 10"
    ),
    "create_error_reply": _INSTRUCTION
    + (
        'reply = ins.create_error_reply(Error(code=1, reason="r"))\n'
        "result = [reply.has_error(), reply.metadata.message_type, reply.metadata.group_id]"
    ),
    "content_of_error_message_is_refused": _INSTRUCTION
    + "Message(Error(code=1), reply_to=ins).content.keys()",
    "message_content_must_be_recorddict": 'Message({"a": 1}, 3, "train")',
    "context_fields": (
        'c = Context(run_id=1, node_id=2, node_config={"partition-id": 0}, state=RecordDict(),'
        ' run_config={"lr": 0.1})\n'
        "result = [c.run_id, c.node_id, c.node_config, c.run_config, len(c.state)]"
    ),
    "flatten_dict": ('result = flatten_dict({"a": {"b": 1, "c": {"d": "x"}}, "e": True})'),
    "unflatten_dict": 'result = unflatten_dict({"a.b": 1, "a.c.d": "x", "e": True})',
    "flatten_dict_rejects_list": 'flatten_dict({"a": [1, 2]})',
    "clientapp_lifespan_wraps_each_message": (
        "events = []\napp = ClientApp()\n"
        "@app.lifespan()\ndef lifespan(context):\n"
        '    events.append("enter")\n    yield\n    events.append("exit")\n'
        "@app.train()\ndef train(msg, context):\n"
        '    events.append("train")\n    return msg.create_reply(RecordDict())\n'
        "ctx = Context(run_id=1, node_id=2, node_config={}, state=RecordDict(), run_config={})\n"
        'msg = Message(RecordDict(), dst_node_id=2, message_type="train")\n'
        "app(msg, ctx)\napp(msg, ctx)\nresult = events"
    ),
    "clientapp_default_action": (
        "app = ClientApp()\n"
        '@app.train("default")\ndef train(msg, context):\n'
        "    return msg.create_reply(RecordDict())\n"
        "ctx = Context(run_id=1, node_id=2, node_config={}, state=RecordDict(), run_config={})\n"
        'msg = Message(RecordDict(), dst_node_id=2, message_type="train")\n'
        "result = app(msg, ctx).has_content()"
    ),
    "serverapp_lifespan_wraps_main": (
        "events = []\napp = ServerApp()\n"
        "@app.lifespan()\ndef lifespan(context):\n"
        '    events.append("enter")\n    yield\n    events.append("exit")\n'
        "@app.main()\ndef main(grid, context):\n"
        '    events.append("main")\n'
        "ctx = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})\n"
        "app(None, ctx)\nresult = events"
    ),
}


def run_scenario(code: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Run one program; its `result`, or the builtin class of the error it raised."""
    scope = dict(namespace)
    try:
        exec(code, scope)
    except Exception as exc:
        base = next(c for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c)
        return {"raises": base.__name__}
    return {"result": scope.get("result")}
