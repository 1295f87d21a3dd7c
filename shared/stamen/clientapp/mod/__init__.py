"""Mods: middleware a ClientApp wraps around each message (`flwr.clientapp.mod`).

A mod is `mod(message, context, call_next) -> Message`; pass them as
`ClientApp(mods=[...])` or per handler, `@app.train(mods=[...])`.
"""

from stamen.client.client_app import Mod
from stamen.compat.unsupported import unsupported_attributes

__all__ = ["Mod"]

__getattr__ = unsupported_attributes(__name__)
