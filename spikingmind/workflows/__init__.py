"""Workflows that combine backends: the layer between the backends and the CLI.

    evaluate.py        closed-loop returns of any source on any backend of the registry
    energy_report.py   spikes recorded by the reference simulator, the ONNX baseline counted, priced
    sweep.py           the ablation over T and K (train, evaluate, time and energy-count every run)

The layering (tests/test_architecture.py): the core (`spikingmind` outside `workflows` and
`cli`) imports neither `spikingmind.export` nor these workflows; `spikingmind.export` imports
only the core; workflows import the core and the backends; the CLI imports anything.
"""
