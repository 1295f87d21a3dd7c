"""DP wrappers and clipping mods against Flower 1.42 (tests/golden/gen_strategies_dp.py).

Noise-free runs match element for element; with noise, the noise's statistics match
Flower's at the same settings (Flower's noise is unseeded, so values cannot match).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inprocess_grid import InProcessGrid
from stamen.app import Context
from stamen.client.mod import adaptiveclipping_mod, fixedclipping_mod
from stamen.common.legacy import (
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from stamen.common.message import Message, MessageType
from stamen.common.records import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from stamen.server import ClientProxy
from stamen.server import strategy as legacy
from stamen.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
)

DATA = np.load(Path(__file__).parents[1] / "golden" / "data" / "strategies_dp.npz")
ROUNDS = 3
CLIENTS = 4
BASE = DATA["base"]
GRID = InProcessGrid([])


def replies(r: int, bits: bool = False) -> list[Message]:
    out = []
    for node in range(1, CLIENTS + 1):
        sent = Message(RecordDict(), node, MessageType.TRAIN)
        metrics = MetricRecord({"num-examples": node})
        if bits:
            metrics["norm_bit"] = int(DATA[f"in/r{r}/bits"][node - 1])
        update = DATA[f"in/r{r}/c{node - 1}"]
        arrays = ArrayRecord({"w": (BASE + update).astype(np.float32)})
        out.append(Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=sent))
    return out


def test_noise_free_wrappers_match_flower_over_three_rounds() -> None:
    fixed = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 0.0, 1.5, 4)
    server = DifferentialPrivacyServerSideAdaptiveClipping(
        FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0, seed=0
    )
    client = DifferentialPrivacyClientSideAdaptiveClipping(
        FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0, seed=0
    )
    for r in range(ROUNDS):
        current = ArrayRecord({"w": BASE.copy()})
        fixed.current_arrays = current
        server.current_arrays = current
        for name, strategy, rs in [
            ("fixed", fixed, replies(r)),
            ("server_adaptive", server, replies(r)),
            ("client_adaptive", client, replies(r, bits=True)),
        ]:
            arrays, _ = strategy.aggregate_train(r + 1, rs)
            assert arrays is not None
            np.testing.assert_allclose(
                arrays["w"].numpy(), DATA[f"{name}/r{r}"], rtol=1e-5, atol=1e-6
            )
            if name != "fixed":
                assert strategy.clipping_norm == pytest.approx(float(DATA[f"{name}/r{r}/norm"]))


@pytest.mark.parametrize("norm", [0.5, 50.0])
@pytest.mark.parametrize("name", ["fixedclipping_mod", "adaptiveclipping_mod"])
def test_clipping_mods_match_flower(name: str, norm: float) -> None:
    mod = {"fixedclipping_mod": fixedclipping_mod, "adaptiveclipping_mod": adaptiveclipping_mod}
    content = RecordDict(
        {"arrays": ArrayRecord({"w": BASE.copy()}), "config": ConfigRecord({"clipping_norm": norm})}
    )

    def trained(msg: Message, ctxt: Context) -> Message:
        arrays = ArrayRecord({"w": BASE + DATA["in/r0/c1"]})
        out = RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 1})})
        return Message(out, reply_to=msg)

    out = mod[name](Message(content, 1, MessageType.TRAIN), Context(1, 1, {}, {}, {}), trained)
    np.testing.assert_allclose(
        out.content["arrays"]["w"].numpy(), DATA[f"mod/{name}/{norm}"], rtol=1e-5, atol=1e-6
    )
    if name == "adaptiveclipping_mod":
        assert out.content["metrics"]["norm_bit"] == int(DATA[f"mod/{name}/{norm}/bit"])


def test_noise_statistics_match_flowers() -> None:
    size = 200_000
    dp = DifferentialPrivacyServerSideFixedClipping(FedAvg(), 1.0, 2.0, 2, seed=11)
    zeros = np.zeros(size, np.float32)
    small = np.full(size, 1e-3, np.float32)
    dp.current_arrays = ArrayRecord({"w": zeros})
    sent = [Message(RecordDict(), n, MessageType.TRAIN) for n in (1, 2)]
    rs = [
        Message(
            RecordDict(
                {"arrays": ArrayRecord({"w": small}), "metrics": MetricRecord({"num-examples": 1})}
            ),
            reply_to=s,
        )
        for s in sent
    ]
    arrays, _ = dp.aggregate_train(1, rs)
    assert arrays is not None
    noise = arrays["w"].numpy().astype(np.float64) - small
    flower_std = float(DATA["noise/z1_c2_m2/std"])
    assert noise.std() == pytest.approx(flower_std, rel=0.02)  # both ~ z C / m = 1.0
    assert abs(noise.mean()) < 5 / np.sqrt(size)
    assert abs(float(DATA["noise/z1_c2_m2/mean"])) < 5 / np.sqrt(size)


def fit_results(r: int) -> list:
    results = []
    for i in range(CLIENTS):
        bit = int(DATA[f"in/r{r}/bits"][i])
        params = ndarrays_to_parameters([(BASE + DATA[f"in/r{r}/c{i}"]).astype(np.float32)])
        res = FitRes(Status(), params, i + 1, {"norm_bit": bit, "dpfedavg_norm_bit": bit})
        results.append((ClientProxy(10 + i, {"partition-id": i}, GRID), res))
    return results


def test_noise_free_legacy_wrappers_match_flower_over_three_rounds() -> None:
    wrappers = {
        "legacy_fixed": legacy.DifferentialPrivacyServerSideFixedClipping(
            legacy.FedAvg(), 0.0, 1.5, CLIENTS
        ),
        "legacy_server_adaptive": legacy.DifferentialPrivacyServerSideAdaptiveClipping(
            legacy.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0, seed=0
        ),
        "legacy_client_adaptive": legacy.DifferentialPrivacyClientSideAdaptiveClipping(
            legacy.FedAvg(), 0.0, CLIENTS, initial_clipping_norm=1.0, seed=0
        ),
        "dpfedavg_fixed": legacy.DPFedAvgFixed(legacy.FedAvg(), CLIENTS, 1.5, 0.0),
        "dpfedavg_adaptive": legacy.DPFedAvgAdaptive(
            legacy.FedAvg(), CLIENTS, init_clip_norm=1.0, noise_multiplier=0.0, seed=0
        ),
    }
    for name, wrapper in wrappers.items():
        for r in range(ROUNDS):
            if hasattr(wrapper, "current_round_params"):
                wrapper.current_round_params = [BASE.copy()]
            params, _ = wrapper.aggregate_fit(r + 1, fit_results(r), [])
            assert params is not None
            (ours,) = parameters_to_ndarrays(params)
            np.testing.assert_allclose(ours, DATA[f"{name}/r{r}"], rtol=1e-5, atol=1e-6)
            norm = getattr(wrapper, "clipping_norm", getattr(wrapper, "clip_norm", 0.0))
            assert norm == pytest.approx(float(DATA[f"{name}/r{r}/norm"])), name
