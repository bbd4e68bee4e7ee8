"""gateway: a policy sidecar that protects any HTTP application."""

__version__ = "0.1.0"
