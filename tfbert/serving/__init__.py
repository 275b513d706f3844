"""Clients for models deployed on TF Serving (REST and gRPC)."""

from tfbert.serving.client import Client, ServingError

__all__ = ["Client", "ServingError"]
