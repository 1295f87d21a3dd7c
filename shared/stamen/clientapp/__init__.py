"""The ClientApp API under Flower's module name (`flwr.clientapp`), and its mods."""

from stamen.client.client_app import ClientApp

from . import mod

__all__ = ["ClientApp", "mod"]
