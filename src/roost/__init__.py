"""Roost: a chat server that never loses a message and is still fast."""

__version__ = "0.1.0"
__all__ = ["__version__"]
