"""ServerApp: the server half of a federated app, in Flower's forms.

`ServerApp()` runs one round of FedAvg; `ServerApp(config=..., strategy=...)` and
`ServerApp(server_fn=...)` run the default round loop; `@app.main()` hands the Grid to
the user's own loop. The runner calls `app(grid, context)` in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from stamen.common.context import Context
from stamen.common.errors import UserInputError
from stamen.common.lifespan import LifespanFn, as_context_manager, no_lifespan

from .client_manager import ClientManager
from .config import ServerAppComponents, ServerConfig, reject_server
from .grid import Grid
from .history import History
from .legacy_context import LegacyContext
from .strategy.strategy import Strategy
from .tracking import recording_history
from .workflow.default_workflow import DefaultWorkflow

__all__ = ["MainFn", "ServerApp", "ServerFn"]

ServerFn = Callable[[Context], ServerAppComponents]
MainFn = Callable[[Grid, Context], None]

_MAIN_AND_COMPONENTS = (
    "Use either a custom main function or a strategy/config/server_fn, not both: "
    "`app = ServerApp()` then decorate `main(grid, context)` with `@app.main()`, or "
    "`app = ServerApp(config=ServerConfig(...), strategy=FedAvg(...))`."
)


class ServerApp:
    """Flower's ServerApp: components or a server_fn for the default loop, or `@app.main()`."""

    def __init__(
        self,
        server: object = None,
        config: ServerConfig | None = None,
        strategy: Strategy | None = None,
        client_manager: ClientManager | None = None,
        server_fn: ServerFn | None = None,
    ) -> None:
        reject_server(server)
        if server_fn is not None and (
            config is not None or strategy is not None or client_manager is not None
        ):
            raise ValueError(
                "Use either `server_fn` or `config`/`strategy`/`client_manager`, not both: "
                "return them from server_fn as ServerAppComponents(...)."
            )
        self._config = config
        self._strategy = strategy
        self._client_manager = client_manager
        self._server_fn = server_fn
        self._main: MainFn | None = None
        self._lifespan: Callable[[Context], AbstractContextManager[None]] = no_lifespan

    def main(self) -> Callable[[MainFn], MainFn]:
        """Decorator: `@app.main()` over `def main(grid: Grid, context: Context) -> None`."""

        def register(main_fn: MainFn) -> MainFn:
            if (
                self._config is not None
                or self._strategy is not None
                or self._client_manager is not None
                or self._server_fn is not None
            ):
                raise ValueError(_MAIN_AND_COMPONENTS)
            if self._main is not None:
                raise ValueError("this ServerApp already has a main function")
            self._main = main_fn
            return main_fn

        return register

    def lifespan(self) -> Callable[[LifespanFn], LifespanFn]:
        """Decorator: `@app.lifespan()` over `def lifespan(context)` that yields once; the
        part before `yield` runs before the app, the rest after it (even if it raised)."""

        def register(fn: LifespanFn) -> LifespanFn:
            self._lifespan = as_context_manager(fn)
            return fn

        return register

    def __call__(self, grid: Grid, context: Context) -> History:
        """Run the app to the end (synchronously; call it off the event loop)."""
        with self._lifespan(context):
            if self._main is not None:
                # Strategy.start or a DefaultWorkflow in the main function fill it.
                with recording_history() as recording:
                    self._main(grid, context)
                return recording.history
            components = self._components(context)
            legacy = LegacyContext(
                context, components.config, components.strategy, components.client_manager
            )
            DefaultWorkflow()(grid, legacy)
            return legacy.history

    def _components(self, context: Context) -> ServerAppComponents:
        if self._server_fn is None:
            return ServerAppComponents(
                strategy=self._strategy, config=self._config, client_manager=self._client_manager
            )
        components = self._server_fn(context)
        if not isinstance(components, ServerAppComponents):
            raise UserInputError(
                "server_fn(context) must return ServerAppComponents(strategy=..., config=...), "
                f"got {type(components).__name__}"
            )
        reject_server(components.server)
        return components
