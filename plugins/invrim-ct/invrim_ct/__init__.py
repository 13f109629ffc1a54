"""invrim-ct: parallel-beam computed tomography for invrim (see README.md)."""
__version__ = "0.1.0"
