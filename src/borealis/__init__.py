"""Borealis: a self-hosted Aurora PostgreSQL Serverless v2."""

__version__ = "0.1.0"
__all__ = ["__version__"]
