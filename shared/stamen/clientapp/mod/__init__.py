"""Mods: middleware a ClientApp wraps around each message (`flwr.clientapp.mod`).

Keep the lists below sorted, one name a line.
"""

from stamen.client.client_app import Mod

from .centraldp_mods import adaptiveclipping_mod, fixedclipping_mod
from .localdp_mod import LocalDpMod

__all__ = [
    "LocalDpMod",
    "Mod",
    "adaptiveclipping_mod",
    "fixedclipping_mod",
]
