"""Mods: middleware a ClientApp wraps around each message (`flwr.clientapp.mod`).

Keep the lists below sorted, one name a line.
"""

from stamen.client.client_app import Mod
from stamen.compat.unsupported import unsupported_attributes

__all__ = [
    "Mod",
]

__getattr__ = unsupported_attributes(__name__)
