"""Client mods under the legacy module name (`flwr.client.mod`).

The mods' home is `stamen.clientapp.mod` (this module re-exports every one of them);
`make_ffn` wraps a function in mods.
"""

from stamen.clientapp.mod import *  # noqa: F403  (one list of mods, two module names)
from stamen.clientapp.mod import __all__ as _mods
from stamen.compat.unsupported import unsupported_attributes

from ..client_app import make_ffn

__all__ = [*_mods, "make_ffn"]

__getattr__ = unsupported_attributes(__name__)
