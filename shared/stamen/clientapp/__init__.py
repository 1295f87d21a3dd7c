"""The ClientApp API under Flower's module name (`flwr.clientapp`), and its mods."""

from stamen.client.client_app import ClientApp
from stamen.compat.unsupported import unsupported_attributes

from . import mod

__all__ = ["ClientApp", "mod"]

__getattr__ = unsupported_attributes(__name__)
