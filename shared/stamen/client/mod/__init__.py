"""Client mods under the legacy module name (`flwr.client.mod`); their home is
`stamen.clientapp.mod`."""

from stamen.clientapp.mod import (
    LocalDpMod,
    Mod,
    adaptiveclipping_mod,
    arrays_size_mod,
    fixedclipping_mod,
    message_size_mod,
)

__all__ = [
    "LocalDpMod",
    "Mod",
    "adaptiveclipping_mod",
    "arrays_size_mod",
    "fixedclipping_mod",
    "message_size_mod",
]
