"""faceid: attribute-conditioned face identification, reproducible with DVC."""

__version__ = "0.1.0"
