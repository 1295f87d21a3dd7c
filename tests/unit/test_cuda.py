"""On a machine with an NVIDIA GPU: CUDA tensors become Arrays, and simulation workers
are pinned to GPUs by `num_gpus`. Skipped where torch sees no GPU (CI has none)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_a_cuda_state_dict_round_trips_through_the_codec() -> None:
    from stamen.codec import decode_message, encode_message
    from stamen.common import ArrayRecord, Message, RecordDict

    model = torch.nn.Linear(64, 10).cuda()
    record = ArrayRecord(model.state_dict())
    envelope, objects = encode_message(Message(RecordDict({"model": record}), 1, "train"))
    back = decode_message(envelope, objects).content["model"]
    assert isinstance(back, ArrayRecord)
    for name, tensor in back.to_torch_state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name].cpu())


APP = """
import json, os
import numpy as np
import torch
from stamen.client import ClientApp, NumPyClient


class Client(NumPyClient):
    def __init__(self, pid, report):
        self.pid, self.report = pid, report

    def fit(self, parameters, config):
        x = torch.ones(256, 256, device="cuda")
        total = float((x @ x).sum().item())
        with open(self.report, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "partition": self.pid, "total": total,
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "devices": torch.cuda.device_count()}) + "\\n")
        return parameters, 1, {}


def client_fn(context):
    return Client(int(context.node_config["partition-id"]), context.run_config["report"])


app = ClientApp(client_fn=client_fn)
"""


def test_simulation_workers_share_a_gpu_by_num_gpus(tmp_path: Path) -> None:
    import numpy as np
    from stamen.common import ndarrays_to_parameters
    from stamen.server import ServerApp, ServerConfig
    from stamen.server.strategy import FedAvg
    from stamen.simulation import run_simulation

    (tmp_path / "gpu_app.py").write_text(textwrap.dedent(APP))
    report = tmp_path / "report.jsonl"
    strategy = FedAvg(
        fraction_evaluate=0.0,
        min_fit_clients=4,
        min_available_clients=4,
        initial_parameters=ndarrays_to_parameters([np.zeros(3, dtype=np.float32)]),
    )
    run_simulation(
        server_app=ServerApp(config=ServerConfig(num_rounds=1), strategy=strategy),
        client_app="gpu_app:app",
        num_supernodes=4,
        backend_config={"num_workers": 2, "client_resources": {"num_cpus": 1, "num_gpus": 0.5}},
        run_config={"report": str(report)},
        directory=tmp_path,
    )
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(row["partition"] for row in rows) == [0, 1, 2, 3]
    assert {row["total"] for row in rows} == {256.0**3}
    assert {row["devices"] for row in rows} == {1}  # each worker sees exactly its GPU
    assert len({row["visible"] for row in rows}) == 1  # both workers share GPU 0
    assert len({row["pid"] for row in rows}) <= 2
