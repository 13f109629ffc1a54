"""An example invrim plugin (see invrim's docs/plugins.md)."""
__version__ = "0.1.0"
