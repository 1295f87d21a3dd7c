"""The steps of the legacy round loop that `DefaultWorkflow` runs over a Grid.

Flower's legacy server loop, with the log lines Flower users know: initial parameters
and their centralized evaluation, then per round fit, centralized evaluation and
federated evaluation. Each round encodes the broadcast model once and shares that
ArrayRecord between all the round's messages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from stamen.common.context import Context
from stamen.common.errors import (
    ConfigError,
    InvalidMessageError,
    NodeReplyError,
    NotEnoughNodesError,
    RoundFailedError,
)
from stamen.common.legacy import (
    Code,
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    GetParametersIns,
    Parameters,
    evaluateins_to_recorddict,
    fitins_to_recorddict,
    parameters_to_arrayrecord,
    recorddict_to_evaluateres,
    recorddict_to_fitres,
)
from stamen.common.message import MessageType
from stamen.common.records import ArrayRecord, RecordDict

from .checkpoint import LoopState, decode_state, encode_state
from .client_manager import wait_timeout
from .client_proxy import ClientProxy, failure_reason
from .config import DEFAULT_ROUND_TIMEOUT, ServerConfig
from .failure_policy import failure_policy
from .grid import Grid
from .legacy_context import LegacyContext

__all__ = [
    "CONFIG_KEY",
    "CURRENT_ROUND",
    "PARAMETERS_KEY",
    "START_TIME",
    "RoundLoop",
    "bind_client_manager",
]

logger = logging.getLogger(__name__)

Ins = TypeVar("Ins", FitIns, EvaluateIns)
Res = TypeVar("Res", FitRes, EvaluateRes)
Failures = list[tuple[ClientProxy, Res] | BaseException]


@dataclass(frozen=True, slots=True)
class _Phase(Generic[Ins, Res]):
    """How one kind of instruction goes out and its replies come back."""

    name: str
    message_type: str
    encode: Callable[[Ins], RecordDict]
    parameters_key: str
    decode: Callable[[RecordDict], Res]


_FIT: _Phase[FitIns, FitRes] = _Phase(
    "fit", MessageType.TRAIN, fitins_to_recorddict, "fitins.parameters", recorddict_to_fitres
)
_EVALUATE: _Phase[EvaluateIns, EvaluateRes] = _Phase(
    "evaluate",
    MessageType.EVALUATE,
    evaluateins_to_recorddict,
    "evaluateins.parameters",
    recorddict_to_evaluateres,
)
_NO_PARAMETERS = Parameters(tensors=[])


PARAMETERS_KEY = "parameters"
"""`context.state.array_records[PARAMETERS_KEY]`: the global model between workflows."""
CONFIG_KEY = "config"
"""`context.state.config_records[CONFIG_KEY]`: "current_round" and "start_time"."""
CURRENT_ROUND = "current_round"
START_TIME = "start_time"


def bind_client_manager(grid: Grid, context: LegacyContext) -> None:
    """Point the client manager at the grid's nodes.

    Run config: "seed" (sampling), "min-available-timeout" (seconds to wait for nodes),
    "round-timeout" (seconds a round waits for replies; see `DEFAULT_ROUND_TIMEOUT`);
    the rounds read "max-failure-rate" (a round whose share of failed nodes is above it
    fails the run; default 1.0) and "allow-empty-rounds" (default false: a round in which
    every node failed fails the run).
    """
    context.client_manager.bind(
        grid, seed=_seed(context), wait_timeout=wait_timeout(context.run_config)
    )


class RoundLoop:
    """The default loop's steps, each on a Grid and a LegacyContext (whose History they fill)."""

    def __init__(self, grid: Grid, context: LegacyContext) -> None:
        self.grid = grid
        self.config = context.config
        self.strategy = context.strategy
        self.client_manager = context.client_manager
        self.history = context.history
        self.round_timeout = _round_timeout(context.config, context)
        self.failure_policy = failure_policy(context.run_config)
        # Parameters -> their ArrayRecord, encoded once per round and shared by its messages.
        self._encoded: dict[int, tuple[Parameters, ArrayRecord]] = {}

    def initialize(self) -> Parameters:
        """Wait for the nodes, get the initial parameters and evaluate them centrally."""
        self._wait_for_nodes()
        parameters = self._initial_parameters()
        logger.info("Evaluating initial global parameters")
        initial = self.strategy.evaluate(0, parameters=parameters)
        if initial is None:
            logger.info("Evaluation returned no results (`None`)")
        else:
            logger.info("initial parameters (loss, other metrics): %s, %s", *initial)
            self.history.add_loss_centralized(0, initial[0])
            self.history.add_metrics_centralized(0, initial[1])
        return parameters

    def resume(self) -> LoopState | None:
        """Wait for the nodes and load the run's checkpoint (the grid's `checkpoints`, when
        it keeps any), the History and the sampler put back as they were; None: start."""
        store = getattr(self.grid, "checkpoints", None)
        record = None if store is None else store.load()
        if record is None:
            return None
        self._wait_for_nodes()
        saved = decode_state(record)
        vars(self.history).update(vars(saved.history))
        restore = getattr(self.client_manager, "restore_sampling_state", None)
        if saved.sampling is not None and restore is not None:
            restore(saved.sampling)
        logger.info("Resuming from the checkpoint of round %d", saved.server_round)
        return saved

    def checkpoint(self, server_round: int, parameters: Parameters) -> None:
        """Save the loop's state after `server_round` to the grid's `checkpoints`, if any."""
        store = getattr(self.grid, "checkpoints", None)
        if store is None:
            return
        sampling = getattr(self.client_manager, "sampling_state", None)
        state = LoopState(
            server_round, parameters, self.history, None if sampling is None else sampling()
        )
        store.save(encode_state(state))

    def evaluate_centrally(self, server_round: int, parameters: Parameters, start: float) -> None:
        centralized = self.strategy.evaluate(server_round, parameters=parameters)
        if centralized is not None:
            loss, metrics = centralized
            elapsed = time.perf_counter() - start
            logger.info("fit progress: (%s, %s, %s, %s)", server_round, loss, metrics, elapsed)
            self.history.add_loss_centralized(server_round, loss)
            self.history.add_metrics_centralized(server_round, metrics)

    def _wait_for_nodes(self) -> None:
        """Wait, once, for the strategy's `min_available_clients` before anything else, so
        that round 1 samples from all the nodes a deployment brings up one by one (a
        strategy samples from those online when it configures a round)."""
        needed = int(getattr(self.strategy, "min_available_clients", 1))
        manager = self.client_manager
        if not manager.wait_for(needed):
            raise NotEnoughNodesError(needed, manager.num_available(), manager.wait_timeout)

    def _initial_parameters(self) -> Parameters:
        parameters = self.strategy.initialize_parameters(client_manager=self.client_manager)
        if parameters is not None:
            logger.info("Using initial global parameters provided by strategy")
            return parameters
        logger.info("Requesting initial parameters from one random client")
        proxy = self.client_manager.sample(1)[0]
        try:
            res = proxy.get_parameters(
                GetParametersIns(config={}), timeout=self.round_timeout, group_id=0
            )
        except NodeReplyError as exc:
            reason = str(exc)
        else:
            if res.status.code == Code.OK:
                logger.info("Received initial parameters from one random client")
                return res.parameters
            reason = proxy.labelled(f"{res.status.code.name}: {res.status.message}")
        logger.warning(
            "Failed to receive initial parameters from the client (%s). "
            "Empty initial parameters will be used.",
            reason,
        )
        return Parameters(tensors=[])

    def fit_round(self, server_round: int, parameters: Parameters) -> Parameters:
        self.client_manager.refresh()
        self._encoded.clear()
        instructions = self.strategy.configure_fit(
            server_round=server_round, parameters=parameters, client_manager=self.client_manager
        )
        if not instructions:
            logger.info("configure_fit: no clients selected, cancel")
            return parameters
        logger.info(
            "configure_fit: strategy sampled %d clients (out of %d)",
            len(instructions),
            self.client_manager.num_available(),
        )
        results, failures = self._exchange(_FIT, server_round, instructions)
        aggregated, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        if aggregated is None:
            return parameters
        self.history.add_metrics_distributed_fit(server_round, metrics)
        return aggregated

    def evaluate_round(self, server_round: int, parameters: Parameters) -> None:
        self.client_manager.refresh()
        instructions = self.strategy.configure_evaluate(
            server_round=server_round, parameters=parameters, client_manager=self.client_manager
        )
        if not instructions:
            logger.info("configure_evaluate: no clients selected, skipping evaluation")
            return
        logger.info(
            "configure_evaluate: strategy sampled %d clients (out of %d)",
            len(instructions),
            self.client_manager.num_available(),
        )
        results, failures = self._exchange(_EVALUATE, server_round, instructions)
        loss, metrics = self.strategy.aggregate_evaluate(server_round, results, failures)
        if loss is not None:
            self.history.add_loss_distributed(server_round, loss)
            self.history.add_metrics_distributed(server_round, metrics)

    def _exchange(
        self,
        phase: _Phase[Ins, Res],
        server_round: int,
        instructions: list[tuple[ClientProxy, Ins]],
    ) -> tuple[list[tuple[ClientProxy, Res]], Failures[Res]]:
        """Send each node its instructions; sort the replies into results and failures."""
        timeout = self.round_timeout
        sent: dict[str, ClientProxy] = {}
        messages = []
        for proxy, ins in instructions:
            content = phase.encode(replace(ins, parameters=_NO_PARAMETERS))
            content[phase.parameters_key] = self._encode(ins.parameters)
            message = self.grid.create_message(
                content, phase.message_type, proxy.node_id, group_id=str(server_round), ttl=timeout
            )
            sent[message.metadata.message_id] = proxy
            messages.append(message)
        replies = {
            reply.metadata.reply_to_message_id: reply
            for reply in self.grid.send_and_receive(messages, timeout=timeout)
        }
        results: list[tuple[ClientProxy, Res]] = []
        failures: Failures[Res] = []
        reasons: list[str] = []  # one line per failure, naming the node by its config
        for message_id, proxy in sent.items():
            reply = replies.get(message_id)
            if reply is None or not reply.has_content():
                reason = proxy.labelled(failure_reason(reply, timeout))
                failures.append(NodeReplyError(proxy.node_id, reason))
                reasons.append(reason)
                continue
            try:
                res = phase.decode(reply.content)
            except (InvalidMessageError, TypeError, ValueError) as exc:
                reason = proxy.labelled(f"{phase.name} reply cannot be read: {exc}")
                failures.append(NodeReplyError(proxy.node_id, reason))
                reasons.append(reason)
                continue
            if res.status.code == Code.OK:
                results.append((proxy, res))
            else:
                failures.append((proxy, res))
                reasons.append(proxy.labelled(f"{res.status.code.name}: {res.status.message}"))
        logger.info(
            "aggregate_%s: received %d results and %d failures",
            phase.name,
            len(results),
            len(failures),
        )
        self.history.add_failures(server_round, len(failures))
        for reason in reasons:
            logger.warning("round %d %s failure: %s", server_round, phase.name, reason)
        if reasons and not getattr(self.strategy, "accept_failures", True):
            raise RoundFailedError(server_round, phase.name, reasons)
        self.failure_policy.check(server_round, phase.name, len(results), reasons)
        return results, failures

    def _encode(self, parameters: Parameters) -> ArrayRecord:
        entry = self._encoded.get(id(parameters))
        if entry is None:
            entry = (parameters, parameters_to_arrayrecord(parameters))
            self._encoded[id(parameters)] = entry
        return entry[1]


def _seed(context: Context) -> int:
    raw = context.run_config.get("seed", 0)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"run config 'seed' must be an integer, got {raw!r}") from None


def _round_timeout(config: ServerConfig, context: Context) -> float:
    """The run config's 'round-timeout', else the app's, else the default."""
    raw = context.run_config.get("round-timeout")
    if raw is None:
        return DEFAULT_ROUND_TIMEOUT if config.round_timeout is None else config.round_timeout
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"run config 'round-timeout' must be seconds > 0, got {raw!r}")
    return value
