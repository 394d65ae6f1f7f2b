"""aurora-tinykv: a throwaway third-party backend over sqlite3 (stdlib), written the way
an outside author would write one, to prove the plugin and conformance-suite story.

It is never imported from the source tree: the tests copy it into a temporary
"site-packages" with a ``.dist-info`` announcing the entry point, exactly as pip would.
"""

from ._backend import TinyKVBackend, TinyKVConfig

__all__ = ["TinyKVBackend", "TinyKVConfig"]
