"""SecAgg+ building blocks shared by `secaggplus_mod` (client) and `SecAggPlusWorkflow`
(server): the protocol's stages and keys, key agreement and share encryption, Shamir
sharing over a prime field, and quantization with masking over flat numpy vectors."""

from .constants import RECORD_KEY_CONFIGS, RECORD_KEY_STATE, Key, Stage

__all__ = ["RECORD_KEY_CONFIGS", "RECORD_KEY_STATE", "Key", "Stage"]
