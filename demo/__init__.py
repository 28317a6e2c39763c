"""The Gradio app around the shared engine: `build_demo(restorer, settings, profile)` returns the page; `app.py` serves
it."""

from .ui import build_demo

__all__ = ["build_demo"]
