"""Mods: middleware a ClientApp wraps around each message (`flwr.clientapp.mod`).

Keep the lists below sorted, one name a line.
"""

from stamen.client.client_app import Mod
from stamen.compat.unsupported import unsupported_attributes

from .centraldp_mods import adaptiveclipping_mod, fixedclipping_mod
from .comms_mods import arrays_size_mod, message_size_mod
from .localdp_mod import LocalDpMod
from .secagg_mod import secagg_mod
from .secaggplus_mod import secaggplus_mod

__all__ = [
    "LocalDpMod",
    "Mod",
    "adaptiveclipping_mod",
    "arrays_size_mod",
    "fixedclipping_mod",
    "message_size_mod",
    "secagg_mod",
    "secaggplus_mod",
]

__getattr__ = unsupported_attributes(__name__)
