"""NumPy reference simulator of NIR graphs: the executable statement of docs/SEMANTICS.md.

Every other backend (PyTorch, Lava, fixed point, the energy counter) is checked against
this package, so it is written for clarity first and speed second. It imports no torch.
What a graph means (node types, shapes, validity, evaluation order with feedback) is
`spikingmind.graph`; here:

    nodes.py       pure step functions and how each node type compiles to one (`COMPILERS`)
    loading.py     `load_graph`: read a .nir file and validate it
    simulator.py   `ReferenceSimulator`: constants once, then `run` steps the graph
"""

from spikingmind.export.reference.loading import load_graph
from spikingmind.export.reference.nodes import COMPILERS
from spikingmind.export.reference.simulator import Carry, ReferenceSimulator, SimulationResult

__all__ = ["COMPILERS", "Carry", "ReferenceSimulator", "SimulationResult", "load_graph"]
