"""Records <-> protocol messages, content addressing and chunking.

`encode_message` / `decode_message` turn a Message into an Envelope plus array objects and
back; `stamen.codec.proto` converts everything else that crosses the wire; `objects`
names, chunks and reassembles array bytes.
"""

from .envelope import Envelope
from .message import ArrayMemo, decode_message, encode_batch, encode_message
from .objects import (
    CHUNK_SIZE,
    MAX_MESSAGE_SIZE,
    Buffer,
    ObjectAssembler,
    check_object,
    collect_object,
    iter_chunks,
    object_id,
)
from .proto import (
    check_proto,
    envelope_from_proto,
    envelope_to_proto,
    metadata_from_proto,
    metadata_to_proto,
    node_from_proto,
    node_to_proto,
    parse_proto,
    run_from_proto,
    run_to_proto,
    user_config_from_proto,
    user_config_to_proto,
)

__all__ = [
    "CHUNK_SIZE",
    "MAX_MESSAGE_SIZE",
    "ArrayMemo",
    "Buffer",
    "Envelope",
    "ObjectAssembler",
    "check_object",
    "check_proto",
    "collect_object",
    "decode_message",
    "encode_batch",
    "encode_message",
    "envelope_from_proto",
    "envelope_to_proto",
    "iter_chunks",
    "metadata_from_proto",
    "metadata_to_proto",
    "node_from_proto",
    "node_to_proto",
    "object_id",
    "parse_proto",
    "run_from_proto",
    "run_to_proto",
    "user_config_from_proto",
    "user_config_to_proto",
]
