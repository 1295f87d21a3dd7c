"""ServerApp: the server half of a federated app, in Flower's forms.

`ServerApp()` runs one round of FedAvg; `ServerApp(config=..., strategy=...)` and
`ServerApp(server_fn=...)` run the default round loop; `@app.main()` hands the Grid to
the user's own loop. The runner calls `app(grid, context)` in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from stamen.common.context import Context
from stamen.common.errors import UserInputError

from .client_manager import ClientManager
from .config import ServerAppComponents, ServerConfig
from .grid import Grid
from .history import History
from .loop import run_rounds
from .strategy.fedavg import FedAvg
from .strategy.strategy import Strategy
from .tracking import recording_history

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
        *,
        config: ServerConfig | None = None,
        strategy: Strategy | None = None,
        client_manager: ClientManager | None = None,
        server_fn: ServerFn | None = None,
    ) -> None:
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

    def __call__(self, grid: Grid, context: Context) -> History:
        """Run the app to the end (synchronously; call it off the event loop)."""
        if self._main is not None:
            with recording_history() as history:  # filled by Strategy.start, if it runs
                self._main(grid, context)
            return history
        components = self._components(context)
        return run_rounds(
            grid,
            context,
            components.config or ServerConfig(),
            components.strategy or FedAvg(),
            components.client_manager or ClientManager(),
        )

    def _components(self, context: Context) -> ServerAppComponents:
        if self._server_fn is None:
            return ServerAppComponents(self._strategy, self._config, self._client_manager)
        components = self._server_fn(context)
        if not isinstance(components, ServerAppComponents):
            raise UserInputError(
                "server_fn(context) must return ServerAppComponents(strategy=..., config=...), "
                f"got {type(components).__name__}"
            )
        return components
