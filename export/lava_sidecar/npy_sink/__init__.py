"""NpySink / NpySource: Lava sink and source that exchange data through .npy files (sidecar only).

Lava 0.10 reads a Var back element by element over its channels (about 0.5 ms per value
on this machine): reading 20 populations of 3840 neurons over 95 steps took 3 minutes.
This sink instead saves its buffer with NumPy at the last step of every `buffer` steps,
so the sidecar loads one file per sink. It lives in a package of its own because Lava's
compiler imports every .py file next to a custom Process' module.
"""

from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class NpySink(AbstractProcess):
    """Records `a_in` (shape (size,)) for `buffer` steps; writes `path` (size, buffer) at
    every step that is a multiple of `buffer` (Lava counts steps from 1)."""

    def __init__(self, *, shape: tuple[int], buffer: int, path: str, dtype: str = "float64") -> None:
        super().__init__(shape=shape, buffer=buffer, path=path, dtype=dtype)
        self.a_in = InPort(shape=shape)
        self.written = Var(shape=(1,), init=0)


class _PyNpySinkModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.buffer = int(proc_params["buffer"])
        self.path = str(proc_params["path"])
        self.data = np.zeros((*proc_params["shape"], self.buffer), dtype=proc_params["dtype"])

    def run_spk(self) -> None:
        self.data[..., (self.time_step - 1) % self.buffer] = self.a_in.recv()
        if self.time_step % self.buffer == 0:
            tmp = f"{self.path}.tmp.npy"
            np.save(tmp, self.data)
            os.replace(tmp, self.path)
            self.written[0] += 1


@implements(proc=NpySink, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNpySinkModelFloat(_PyNpySinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    written: np.ndarray = LavaPyType(np.ndarray, int)


@implements(proc=NpySink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNpySinkModelFixed(_PyNpySinkModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    written: np.ndarray = LavaPyType(np.ndarray, int)


class NpySource(AbstractProcess):
    """Sends column `(t - 1) % buffer` of the (size, buffer) array in `path`, re-read from the
    file at the first step of every `buffer` steps (so a new job only rewrites the file:
    setting a Var would cross Lava's channels value by value)."""

    def __init__(self, *, shape: tuple[int], buffer: int, path: str, dtype: str = "float64") -> None:
        super().__init__(shape=shape, buffer=buffer, path=path, dtype=dtype)
        self.s_out = OutPort(shape=shape)


class _PyNpySourceModel(PyLoihiProcessModel):
    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.buffer = int(proc_params["buffer"])
        self.path = str(proc_params["path"])
        self.dtype = proc_params["dtype"]
        self.data = None

    def run_spk(self) -> None:
        column = (self.time_step - 1) % self.buffer
        if column == 0 or self.data is None:
            self.data = np.load(self.path).astype(self.dtype)
        self.s_out.send(self.data[:, column])


@implements(proc=NpySource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyNpySourceModelFloat(_PyNpySourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)


@implements(proc=NpySource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNpySourceModelFixed(_PyNpySourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
