"""Typed interfaces: WIT, WAVE, the Canonical ABI and the Python value model."""
