"""Code that runs inside the Lava sidecar (Python 3.10, lava-nc 0.10.0, no torch).

`run.py` is the sidecar's entry point; `plan.py` (NumPy only) is shared with the main
process. Only Lava core processes are used, so no custom Process module sits in this
folder (Lava's compiler would import every .py next to one).
"""
