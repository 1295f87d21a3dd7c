"""The client's callable types, under the module name older Flower apps import
(`flwr.client.typing`). Their home is `stamen.client.client_app`."""

from .client_app import ClientAppCallable, ClientFn, LegacyClientFn, Mod

ClientFnExt = ClientFn
"""Flower's name for `client_fn(context) -> Client`."""

__all__ = ["ClientAppCallable", "ClientFn", "ClientFnExt", "LegacyClientFn", "Mod"]
