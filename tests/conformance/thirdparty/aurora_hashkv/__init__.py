"""aurora-hashkv: an unordered third-party backend (a hash table), written from the docs."""
