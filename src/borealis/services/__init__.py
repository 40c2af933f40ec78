"""Thin handlers per AWS service, calling the domain."""
