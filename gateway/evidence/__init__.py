"""The evidence log: an append-only, RFC 9162 Merkle tree of entries with signed checkpoints."""
