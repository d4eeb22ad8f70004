"""MatteFlow: background removal for photo pipelines."""

__version__ = "0.1.0"
