"""The version of aurora-storage (its own module, so any module can read it without
importing the package facade)."""

__version__ = "0.1.0"
