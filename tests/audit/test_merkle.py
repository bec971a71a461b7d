"""RFC 9162 Merkle tree: the Certificate Transparency reference vectors (SHA-256) and
round trips for every small tree, with tampered proofs rejected."""

from __future__ import annotations

import pytest

from sscard.audit import merkle
from sscard.audit.errors import ProofError

# Reference data from the RFC 6962 reference implementation's tests (the same vectors the Go
# and C++ CT code use): eight leaves, the root of each prefix, some proofs.
CT_LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
             bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
H = "sha256"
LEAVES = [merkle.leaf_hash(H, e) for e in CT_LEAVES]


def test_empty_root_is_hash_of_nothing() -> None:
    assert merkle.root(H, []).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_reference_vectors(n: int) -> None:
    assert merkle.root(H, LEAVES[:n]).hex() == CT_ROOTS[n - 1]
    assert merkle.frontier_root(H, merkle.frontier_of(H, LEAVES[:n])).hex() == CT_ROOTS[n - 1]


def test_frontier_append_tracks_root() -> None:
    frontier: list[bytes] = []
    for n, leaf in enumerate(LEAVES):
        frontier = merkle.frontier_append(H, frontier, n, leaf)
        assert merkle.frontier_root(H, frontier).hex() == CT_ROOTS[n]
    with pytest.raises(ValueError, match="does not fit tree size"):
        merkle.frontier_append(H, frontier, 5, LEAVES[0])


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_inclusion_proof_matches_reference(index: int, size: int) -> None:
    proof = merkle.inclusion_proof(H, index, LEAVES[:size])
    assert [p.hex() for p in proof] == CT_INCLUSION[(index, size)]


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_consistency_proof_matches_reference(old: int, new: int) -> None:
    proof = merkle.consistency_proof(H, old, LEAVES[:new])
    assert [p.hex() for p in proof] == CT_CONSISTENCY[(old, new)]


@pytest.mark.parametrize("hash_name", ["sha256", "sm3"])
def test_every_inclusion_proof_verifies_and_tampering_fails(hash_name: str) -> None:
    leaves = [merkle.leaf_hash(hash_name, bytes([i])) for i in range(21)]
    for n in range(1, len(leaves) + 1):
        r = merkle.root(hash_name, leaves[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(hash_name, i, leaves[:n])
            assert merkle.verify_inclusion(hash_name, i, n, leaves[i], proof, r)
            # another leaf, index, size or a flipped proof byte must each fail
            assert not merkle.verify_inclusion(hash_name, i, n, leaves[(i + 1) % 21], proof, r)
            if n > 1:
                assert not merkle.verify_inclusion(hash_name, (i + 1) % n, n, leaves[i], proof, r)
                bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not merkle.verify_inclusion(hash_name, i, n, leaves[i], bad, r)
                assert not merkle.verify_inclusion(hash_name, i, n, leaves[i], proof[:-1], r)
            if n & (n - 1) == 0:  # a power of two: one more leaf makes the path one longer
                assert not merkle.verify_inclusion(hash_name, i, n + 1, leaves[i], proof, r)


@pytest.mark.parametrize("hash_name", ["sha256", "sm3"])
def test_every_consistency_proof_verifies_and_tampering_fails(hash_name: str) -> None:
    leaves = [merkle.leaf_hash(hash_name, bytes([i])) for i in range(19)]
    roots = [merkle.root(hash_name, leaves[:n]) for n in range(len(leaves) + 1)]
    for n in range(1, len(leaves) + 1):
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(hash_name, m, leaves[:n])
            assert merkle.verify_consistency(hash_name, m, n, proof, roots[m], roots[n])
            if m < n:
                # a different old tree (one leaf changed) is not a prefix
                forged = merkle.root(hash_name, [leaves[0][::-1], *leaves[1:m]])
                assert not merkle.verify_consistency(hash_name, m, n, proof, forged, roots[n])
                assert not merkle.verify_consistency(hash_name, m, n, proof, roots[m],
                                                     roots[n - 1])
                bad = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
                assert not merkle.verify_consistency(hash_name, m, n, bad, roots[m], roots[n])
                assert not merkle.verify_consistency(hash_name, m, n, [], roots[m], roots[n])


def test_proof_requests_outside_the_tree_are_refused() -> None:
    with pytest.raises(ProofError, match="outside a tree of size 8"):
        merkle.inclusion_proof(H, 8, LEAVES)
    with pytest.raises(ProofError, match=r"outside 0\.\.8"):
        merkle.consistency_proof(H, 9, LEAVES)
    assert not merkle.verify_consistency(H, 5, 3, [], LEAVES[0], LEAVES[1])
