"""The HTTP API for apps and services (FastAPI): see `tidings.api.app`."""

from tidings.api.app import create_app

__all__ = ["create_app"]
