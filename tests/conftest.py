"""Shared fixtures: a tiny CartPole dataset and a briefly trained tiny spiking DT.

Everything is small so the suite stays at a few minutes; the real runs live in `make demo`
and benchmarks/. Helpers that are not fixtures live in tests/support/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.support.checkpoints import tiny_train_config

# Tiny models: one thread is fastest, and immune to spin-waiting when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_global_generators():
    """Every test starts from the same global RNG state, whatever ran before it: a draw a test
    forgot to seed is still the same on every run and in every order (tests seed their own
    generators where the values matter; this only removes order dependence)."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = previous


@pytest.fixture(scope="session")
def cartpole_dataset(datasets_root) -> str:
    """12 CartPole episodes: expert, capped expert and random."""
    from spikingmind.data import collect

    dataset_id, _ = collect("CartPole-v1", 12, {"expert": 0.5, "capped": 0.25, "random": 0.25}, seed=3,
                            dataset_id="tiny-cartpole-v0", root=datasets_root)
    return dataset_id


@pytest.fixture(scope="session")
def snn_checkpoint(tmp_path_factory, cartpole_dataset) -> Path:
    """A tiny spiking DT trained for a few steps (enough for non-trivial BatchNorm stats)."""
    from spikingmind.train import train

    run = tmp_path_factory.mktemp("runs") / "snn"
    checkpoint, _ = train(run, tiny_train_config(cartpole_dataset, "snn"))
    return checkpoint


@pytest.fixture(scope="session")
def ann_checkpoint(tmp_path_factory, cartpole_dataset) -> Path:
    from spikingmind.train import train

    run = tmp_path_factory.mktemp("runs") / "ann"
    checkpoint, _ = train(run, tiny_train_config(cartpole_dataset, "ann"))
    return checkpoint


@pytest.fixture(scope="session")
def lava_python() -> Path:
    """The Lava sidecar interpreter; skips only where no Python 3.10 exists at all."""
    from spikingmind.errors import LavaError
    from spikingmind.export import lava_env

    try:
        return lava_env.find_lava_python()
    except LavaError:
        if lava_env.find_base_python310() is None:
            pytest.skip("no Python 3.10 interpreter on this machine: lava-nc 0.10 cannot run")
        raise  # a 3.10 exists: the sidecar venv must too (`make lava-env`)
