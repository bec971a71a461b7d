"""The tamper-evident audit log that the CA, RA, KMC and gateway write to.

Records are hash-chained and committed to by an RFC 9162 Merkle tree whose heads are signed as
checkpoints by an audit key. See docs/operations-audit.md.
"""
