"""Helpers shared by the tests (fixtures stay in tests/conftest.py, which pytest requires):

    checkpoints.py    tiny model configs, the tiny training config, untrained checkpoints
    graphs.py         small NIR graphs of docs/SEMANTICS.md's "Model shape" and their inputs
    graph_checks.py   field-by-field graph equality and threshold margins of recorded spikes
"""
