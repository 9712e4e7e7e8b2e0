"""The HTTP front door (Starlette): routes, auth, error mapping, OpenAPI."""

from gpubridge.http_api.routes import build_routes

__all__ = ["build_routes"]
