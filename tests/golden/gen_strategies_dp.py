"""Golden vectors: Flower 1.42's DP wrappers and clipping mods (writes data/strategies_dp.npz).

Noise-free settings (noise multiplier 0) are deterministic and compared element for
element: clipping, the wrapped FedAvg, the adaptive norm's trajectory over 3 rounds.
With noise, Flower's noise is unseeded, so only its statistics are recorded (mean and
stddev of the noise on a 200,000-element model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.common import FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import strategy as legacy
from flwr.serverapp import strategy as message
from flwr.supercore.task_identity import TaskIdentity

OUT = Path(__file__).parent / "data" / "strategies_dp.npz"
ROUNDS = 3
CLIENTS = 4


def replies(updates: list[np.ndarray], base: np.ndarray, bits: list[int] | None = None) -> list:
    out = []
    for node, update in enumerate(updates, start=1):
        sent = Message(RecordDict(), dst_node_id=node, message_type="train")
        metrics = {"num-examples": node}
        if bits is not None:
            metrics["norm_bit"] = bits[node - 1]
        content = RecordDict(
            {
                "arrays": ArrayRecord({"w": Array((base + update).astype(np.float32))}),
                "metrics": MetricRecord(metrics),
            }
        )
        out.append(Message(content, reply_to=sent))
    return out


def fit_results(updates: list[np.ndarray], base: np.ndarray, bits: list[int]) -> list:
    class Proxy:
        def __init__(self, cid: str) -> None:
            self.cid = cid

    return [
        (
            Proxy(str(i)),
            FitRes(
                Status(0, ""),
                ndarrays_to_parameters([(base + u).astype(np.float32)]),
                i + 1,
                {"norm_bit": bits[i], "dpfedavg_norm_bit": bits[i]},
            ),
        )
        for i, u in enumerate(updates)
    ]


def legacy_run(store: dict, base: np.ndarray, updates) -> None:
    """The legacy wrappers, noise-free, over Flower's legacy FedAvg."""
    wrappers = {
        "legacy_fixed": legacy.DifferentialPrivacyServerSideFixedClipping(
            legacy.FedAvg(), 0.0, 1.5, CLIENTS
        ),
        "legacy_server_adaptive": legacy.DifferentialPrivacyServerSideAdaptiveClipping(
            legacy.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0
        ),
        "legacy_client_adaptive": legacy.DifferentialPrivacyClientSideAdaptiveClipping(
            legacy.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0
        ),
        "dpfedavg_fixed": legacy.DPFedAvgFixed(legacy.FedAvg(), CLIENTS, 1.5, 0.0),
        "dpfedavg_adaptive": legacy.DPFedAvgAdaptive(
            legacy.FedAvg(), CLIENTS, init_clip_norm=1.0, noise_multiplier=0.0
        ),
    }
    for name, wrapper in wrappers.items():
        for r in range(ROUNDS):
            if hasattr(wrapper, "current_round_params"):
                wrapper.current_round_params = [base.copy()]
            bits = [int(b) for b in store[f"in/r{r}/bits"]]
            params, _ = wrapper.aggregate_fit(r + 1, fit_results(updates(r), base, bits), [])
            store[f"{name}/r{r}"] = parameters_to_ndarrays(params)[0]
            norm = getattr(wrapper, "clipping_norm", getattr(wrapper, "clip_norm", 0.0))
            store[f"{name}/r{r}/norm"] = np.array(norm)


def main() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    rng = np.random.default_rng(21)
    store: dict[str, np.ndarray] = {}
    base = rng.standard_normal(50).astype(np.float32)
    store["base"] = base
    for r in range(ROUNDS):
        scales = rng.uniform(0.05, 3.0, CLIENTS)
        for c in range(CLIENTS):
            store[f"in/r{r}/c{c}"] = (scales[c] * rng.standard_normal(50)).astype(np.float32)
        store[f"in/r{r}/bits"] = rng.integers(0, 2, CLIENTS)

    def updates(r: int) -> list[np.ndarray]:
        return [store[f"in/r{r}/c{c}"] for c in range(CLIENTS)]

    fixed = message.DifferentialPrivacyServerSideFixedClipping(message.FedAvg(), 0.0, 1.5, 4)
    server_adaptive = message.DifferentialPrivacyServerSideAdaptiveClipping(
        message.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0
    )
    client_adaptive = message.DifferentialPrivacyClientSideAdaptiveClipping(
        message.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0
    )
    for r in range(ROUNDS):
        current = ArrayRecord({"w": Array(base.copy())})
        fixed.current_arrays = current
        arrays, _ = fixed.aggregate_train(r + 1, replies(updates(r), base))
        store[f"fixed/r{r}"] = arrays["w"].numpy()
        server_adaptive.current_arrays = current
        arrays, _ = server_adaptive.aggregate_train(r + 1, replies(updates(r), base))
        store[f"server_adaptive/r{r}"] = arrays["w"].numpy()
        store[f"server_adaptive/r{r}/norm"] = np.array(server_adaptive.clipping_norm)
        bits = [int(b) for b in store[f"in/r{r}/bits"]]
        arrays, _ = client_adaptive.aggregate_train(r + 1, replies(updates(r), base, bits))
        store[f"client_adaptive/r{r}"] = arrays["w"].numpy()
        store[f"client_adaptive/r{r}/norm"] = np.array(client_adaptive.clipping_norm)

    legacy_run(store, base, updates)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    mods = [
        ("fixedclipping_mod", fixedclipping_mod),
        ("adaptiveclipping_mod", adaptiveclipping_mod),
    ]
    for name, mod in mods:
        for norm in (0.5, 50.0):
            content = RecordDict(
                {
                    "arrays": ArrayRecord({"w": Array(base.copy())}),
                    "config": ConfigRecord({"clipping_norm": norm}),
                }
            )
            instruction = Message(content, dst_node_id=1, message_type="train")

            def trained(msg: Message, ctxt: Context) -> Message:
                out = RecordDict(
                    {
                        "arrays": ArrayRecord({"w": Array(base + store["in/r0/c1"])}),
                        "metrics": MetricRecord({"num-examples": 1}),
                    }
                )
                return Message(out, reply_to=msg)

            out = mod(instruction, context, trained)
            store[f"mod/{name}/{norm}"] = out.content["arrays"]["w"].numpy()
            if name == "adaptiveclipping_mod":
                store[f"mod/{name}/{norm}/bit"] = np.array(out.content["metrics"]["norm_bit"])

    noisy = message.DifferentialPrivacyServerSideFixedClipping(message.FedAvg(), 1.0, 2.0, 2)
    zeros = np.zeros(200_000, np.float32)
    noisy.current_arrays = ArrayRecord({"w": Array(zeros.copy())})
    small = np.full(200_000, 1e-3, np.float32)  # Flower divides by the update's norm
    arrays, _ = noisy.aggregate_train(1, replies([small, small], zeros))
    noise = arrays["w"].numpy().astype(np.float64) - small
    store["noise/z1_c2_m2/mean"] = np.array(noise.mean())
    store["noise/z1_c2_m2/std"] = np.array(noise.std())

    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **store)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(store)} entries)")


if __name__ == "__main__":
    main()
