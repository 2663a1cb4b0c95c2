"""Code that runs inside the Lava sidecar (Python 3.10, lava-nc 0.10.0, no torch).

`run.py` is the sidecar's entry point (`python -m spikingmind.export.lava_sidecar.run`, with
spikingmind installed into the Lava venv without dependencies); `plan.py` (NumPy only) is
shared with the main process. The one custom Process (`npy_sink`) sits in a package folder
of its own: Lava's compiler imports every .py next to a custom Process' module (and the
modules of its parent package, here `run` and `plan`, which have no side effects on import).
"""
