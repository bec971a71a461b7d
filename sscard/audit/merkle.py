"""Merkle tree over the record hashes, as RFC 9162 §2.1 defines it.

``leaf = H(0x00 || entry)`` and ``node = H(0x01 || left || right)``; the tree of ``n`` leaves
splits at the largest power of two below ``n``. Inclusion proofs (§2.1.3) and consistency proofs
(§2.1.4) are generated from the leaf hashes and verified with the RFC's iterative algorithms,
which need nothing but the proof, the sizes and the roots.

The log keeps a *frontier* (the roots of the perfect subtrees that make up the current tree,
largest first), so appending a leaf and computing the current root cost O(log n), not O(n).
"""

from __future__ import annotations

from collections.abc import Sequence

from sscard.audit.errors import ProofError
from sscard.crypto.hashes import digest

_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(hash_name: str, entry: bytes) -> bytes:
    return digest(hash_name, _LEAF + entry)


def node_hash(hash_name: str, left: bytes, right: bytes) -> bytes:
    return digest(hash_name, _NODE + left + right)


def empty_root(hash_name: str) -> bytes:
    return digest(hash_name, b"")


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n`` >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(hash_name: str, leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up: an odd node at the end of a level moves up unchanged,
    which builds the same tree as the RFC's recursive split."""
    if not leaves:
        return empty_root(hash_name)
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(hash_name, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _subtree_root(hash_name: str, leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    return root(hash_name, leaves[lo:hi])


def inclusion_proof(hash_name: str, index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1 for leaf ``index`` in the tree of all ``leaves``."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ProofError(f"leaf index {index} is outside a tree of size {n}")
    proof: list[bytes] = []
    lo, hi, m = 0, n, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            proof.append(_subtree_root(hash_name, leaves, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_subtree_root(hash_name, leaves, lo, lo + k))
            lo, m = lo + k, m - k
    proof.reverse()  # built outermost sibling first; the path starts beside the leaf
    return proof


def verify_inclusion(hash_name: str, index: int, tree_size: int, leaf: bytes,
                     proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does ``leaf`` (a leaf hash) sit at ``index`` under ``expected_root``?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(hash_name, p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(hash_name, r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(hash_name: str, old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1: the tree of ``old_size`` leaves is a prefix of the
    tree of all ``leaves``."""
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ProofError(f"old tree size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, n, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_subtree_root(hash_name, leaves, lo + k, hi))
            hi = lo + k
        else:
            proof.append(_subtree_root(hash_name, leaves, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(_subtree_root(hash_name, leaves, lo, hi))
    proof.reverse()
    return proof


def verify_consistency(hash_name: str, old_size: int, new_size: int, proof: Sequence[bytes],
                       old_root: bytes, new_root: bytes) -> bool:
    """RFC 9162 §2.1.4.2: is the tree ``old_root`` of ``old_size`` a prefix of ``new_root``?"""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a subtree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(hash_name, c, fr)
            sr = node_hash(hash_name, c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(hash_name, sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def frontier_append(hash_name: str, frontier: Sequence[bytes], size: int,
                    leaf: bytes) -> list[bytes]:
    """The frontier of the tree of ``size + 1`` leaves, from that of ``size`` leaves."""
    if len(frontier) != bin(size).count("1"):
        raise ValueError(f"frontier of {len(frontier)} nodes does not fit tree size {size}")
    nodes = list(frontier)
    node = leaf
    while size & 1:  # each trailing one-bit is a perfect subtree the new leaf completes
        node = node_hash(hash_name, nodes.pop(), node)
        size >>= 1
    nodes.append(node)
    return nodes


def frontier_root(hash_name: str, frontier: Sequence[bytes]) -> bytes:
    if not frontier:
        return empty_root(hash_name)
    r = frontier[-1]
    for node in reversed(frontier[:-1]):
        r = node_hash(hash_name, node, r)
    return r


def frontier_of(hash_name: str, leaves: Sequence[bytes]) -> list[bytes]:
    """The frontier of a whole tree, from its leaves (for rebuilding or checking the stored one)."""
    nodes: list[bytes] = []
    lo, n = 0, len(leaves)
    while lo < n:
        width = 1 << ((n - lo).bit_length() - 1)
        nodes.append(root(hash_name, leaves[lo:lo + width]))
        lo += width
    return nodes
