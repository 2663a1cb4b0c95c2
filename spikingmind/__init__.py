"""spikingmind: spiking Decision Transformers for control, exported through NIR."""

__version__ = "0.1.0"
