"""Durable state: every change is written here before it is acted on (interface in ``_api``, SQLite in ``_sqlite``)."""

from borealis.store._api import Conflict, Document, Lease, StateStore, Versioned
from borealis.store._crypto import Sealer, read_or_create_key
from borealis.store._files import private_dir, private_file, private_files
from borealis.store._sqlite import Store, Table

__all__ = [
    "Conflict",
    "Document",
    "Lease",
    "Sealer",
    "StateStore",
    "Store",
    "Table",
    "Versioned",
    "private_dir",
    "private_file",
    "private_files",
    "read_or_create_key",
]
