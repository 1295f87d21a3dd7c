"""Envelope: a Message as the SuperLink routes it, without its array payloads.

The SuperLink reads only `metadata`; `payload` is the serialized body (a protobuf
`stamen.v1.Message` with metadata left empty), opaque to it; `object_ids` name the
content-addressed array objects the body refers to, which travel separately.
"""

from __future__ import annotations

from dataclasses import dataclass

from stamen.common.message import Metadata

__all__ = ["Envelope"]


@dataclass(frozen=True, slots=True)
class Envelope:
    metadata: Metadata
    payload: bytes
    object_ids: tuple[str, ...] = ()

    @property
    def message_id(self) -> str:
        return self.metadata.message_id
