"""The Python function runtime: ``python -m flotilla.fn.runtime`` serves one function.

This package imports nothing from the rest of flotilla, so ``fn build`` can copy it into an image
alone (with starlette, uvicorn and their pure-Python dependencies).
"""

from .types import CloudEvent, Request, Response

__all__ = ["CloudEvent", "Request", "Response"]
