"""The memory backend: the reference implementation, for tests and caching.

``aurora_storage.open("memory://")`` gives a fresh, empty, process-local store. It
registers through the ``aurora_storage`` entry point exactly as an outside plugin does.
"""

from ._backend import MemoryBackend, MemoryConfig

__all__ = ["MemoryBackend", "MemoryConfig"]
