"""Mods: middleware a ClientApp wraps around each message (`flwr.clientapp.mod`).

Keep the lists below sorted, one name a line.
"""

from stamen.client.client_app import Mod
from stamen.compat.unsupported import unsupported_attributes

from .secagg_mod import secagg_mod
from .secaggplus_mod import secaggplus_mod

__all__ = [
    "Mod",
    "secagg_mod",
    "secaggplus_mod",
]

__getattr__ = unsupported_attributes(__name__)
