"""The package version, in a module of its own so every module can import it without a
circle through the package's ``__init__``."""

__version__ = "0.2.0"
