"""The package version (a leaf: every layer may read it without importing the public API above it)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
