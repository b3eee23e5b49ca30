"""The `golemish` command line: main.py holds the root group and its commands."""

from .main import main

__all__ = ["main"]
