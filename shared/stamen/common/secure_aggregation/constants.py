"""The SecAgg+ stages and the keys of the ConfigRecords that carry them.

The stage and key names are Flower's (`flwr.common.secure_aggregation.secaggplus_constants`),
so a log or a recorded message reads the same; the masked vector travels in an
ArrayRecord (`MASKED_RECORD`) rather than as bytes in a ConfigRecord, so that large
models stream in chunks like any other array.
"""

from __future__ import annotations

__all__ = ["MASKED_RECORD", "RECORD_KEY_CONFIGS", "RECORD_KEY_STATE", "Key", "Stage"]

RECORD_KEY_STATE = "secaggplus_state"
"""`context.state.config_records[RECORD_KEY_STATE]`: a node's protocol state between stages."""
RECORD_KEY_CONFIGS = "secaggplus_configs"
"""The ConfigRecord of each SecAgg+ instruction and reply."""
MASKED_RECORD = "secaggplus_masked"
"""The ArrayRecord of a node's masked vector (one flat uint32 array)."""


class Stage:
    """The four stages of one SecAgg+ round, in order."""

    SETUP = "setup"
    SHARE_KEYS = "share_keys"
    COLLECT_MASKED_VECTORS = "collect_masked_vectors"
    UNMASK = "unmask"
    _stages = (SETUP, SHARE_KEYS, COLLECT_MASKED_VECTORS, UNMASK)

    @classmethod
    def all(cls) -> tuple[str, str, str, str]:
        return cls._stages


class Key:
    """The keys of the SecAgg+ ConfigRecords."""

    STAGE = "stage"
    SAMPLE_NUMBER = "sample_num"
    SHARE_NUMBER = "share_num"
    THRESHOLD = "threshold"
    CLIPPING_RANGE = "clipping_range"
    TARGET_RANGE = "target_range"
    MOD_RANGE = "mod_range"
    MAX_WEIGHT = "max_weight"
    PUBLIC_KEY_1 = "pk1"
    PUBLIC_KEY_2 = "pk2"
    DESTINATION_LIST = "dsts"
    CIPHERTEXT_LIST = "ctxts"
    SOURCE_LIST = "srcs"
    ACTIVE_NODE_ID_LIST = "active_nids"
    DEAD_NODE_ID_LIST = "dead_nids"
    NODE_ID_LIST = "nids"
    SHARE_LIST = "shares"
