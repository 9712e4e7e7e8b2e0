"""gpubridge: a self-hostable GPU inference gateway."""

__version__ = "0.1.0"
