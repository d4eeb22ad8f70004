"""MatteFlow: background removal for photo pipelines."""

from .api import remove

__version__ = "0.1.0"
__all__ = ["remove", "__version__"]
