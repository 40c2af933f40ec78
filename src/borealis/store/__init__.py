"""Durable state: every change is written here before it is acted on."""

from borealis.store._crypto import Sealer, read_or_create_key
from borealis.store._files import private_dir, private_file, private_files
from borealis.store._sqlite import Store, Table

__all__ = ["Sealer", "Store", "Table", "private_dir", "private_file", "private_files", "read_or_create_key"]
