"""The RFC 9162 Merkle tree: public test vectors, mutations, and properties against the RFC's
own recursive definitions.

Vectors: transparency-dev/merkle ``proof/verify_test.go`` (the RFC 6962 reference vectors of
Google's certificate-transparency ``merkle_tree_test``); that file numbers leaves from 1, the
tables below from 0.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.evidence.merkle import (
    EMPTY_ROOT,
    Key,
    MemoryNodes,
    MissingNodeError,
    NodeReader,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    subtree_keys,
    verify_consistency,
    verify_inclusion,
)

# --- the RFC's definitions, written independently of the module ---------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _sha(b"\x01" + left + right)


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, by RFC 9162 2.1.1's recursion."""
    n = len(leaves)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return leaves[0]
    k = _k(n)
    return _node(naive_root(leaves[:k]), naive_root(leaves[k:]))


def naive_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]), RFC 9162 2.1.3.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return naive_path(m, leaves[:k]) + [naive_root(leaves[k:])]
    return naive_path(m - k, leaves[k:]) + [naive_root(leaves[:k])]


def naive_subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b), RFC 9162 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_root(leaves)]
    k = _k(n)
    if m <= k:
        return naive_subproof(m, leaves[:k], complete) + [naive_root(leaves[k:])]
    return naive_subproof(m - k, leaves[k:], False) + [naive_root(leaves[:k])]


# --- vectors -------------------------------------------------------------------------------

LEAF_INPUTS = [bytes.fromhex(x) for x in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f")]
LEAF_HASHES = [leaf_hash(entry) for entry in LEAF_INPUTS]
ROOTS = {size: bytes.fromhex(x) for size, x in enumerate((
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
))}


def _hashes(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


INCLUSION_VECTORS = [  # (leaf index, tree size, PATH)
    (0, 1, []),
    (0, 8, _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, _hashes("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                   "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 3, _hashes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (1, 5, _hashes("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
]

CONSISTENCY_VECTORS = [  # (first, second, PROOF)
    (1, 1, []),
    (1, 8, _hashes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                   "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (6, 8, _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                   "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
    (2, 5, _hashes("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                   "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 7, _hashes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                   "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
VECTOR_STORE = MemoryNodes.from_leaf_hashes(LEAF_HASHES)

# A larger tree for the properties: one store, read through a reader that refuses any node
# outside the tree size being asked about (a full store would otherwise mask such a bug).
MAX_SIZE = 1024
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
STORE = MemoryNodes.from_leaf_hashes(LEAVES)


class BoundedReader:
    """Serves ``STORE`` as the tree of ``tree_size`` leaves, counting batched reads."""

    def __init__(self, tree_size: int, store: MemoryNodes = STORE) -> None:
        self.tree_size = tree_size
        self.store = store
        self.calls: list[list[Key]] = []

    def get_nodes(self, keys: list[Key]) -> dict[Key, bytes]:
        for level, index in keys:
            assert (index + 1) << level <= self.tree_size, f"read {(level, index)} beyond {self.tree_size}"
        self.calls.append(list(keys))
        return self.store.get_nodes(keys)


def _flip(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def proof_mutations(proof: list[bytes], extras: Sequence[bytes]) -> Iterator[tuple[str, list[bytes]]]:
    """Every single-step corruption of a proof: drop, add, reorder, flip any bit, bad length."""
    n = len(proof)
    for i in range(n):
        yield f"drop [{i}]", proof[:i] + proof[i + 1:]
        yield f"truncate [{i}]", proof[:i] + [proof[i][:-1]] + proof[i + 1:]
        yield f"extend [{i}]", proof[:i] + [proof[i] + b"\x00"] + proof[i + 1:]
        for bit in range(len(proof[i]) * 8):
            yield f"flip [{i}] bit {bit}", proof[:i] + [_flip(proof[i], bit)] + proof[i + 1:]
    for j in range(n + 1):
        for extra in [SOME_HASH, EMPTY_ROOT, b"", *extras, *proof]:
            yield f"insert at {j}", proof[:j] + [extra] + proof[j:]
    for i in range(n - 1):
        if proof[i] != proof[i + 1]:
            yield f"swap [{i}] [{i + 1}]", proof[:i] + [proof[i + 1], proof[i]] + proof[i + 2:]
    if n:
        yield "reversed", proof[::-1] if n > 1 else [SOME_HASH]
        yield "empty", []


# --- hashing basics ------------------------------------------------------------------------


def test_hashes_follow_rfc_9162_domain_separation() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert leaf_hash(b"") == ROOTS[1]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    assert naive_root(LEAF_HASHES[:0]) == ROOTS[0]


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_match_the_reference_vectors(size: int) -> None:
    assert naive_root(LEAF_HASHES[:size]) == ROOTS[size]
    assert root(size, VECTOR_STORE) == ROOTS[size]
    builder = TreeBuilder()
    builder.append(LEAF_HASHES[:size])
    assert builder.root == ROOTS[size]


def test_subtree_keys_decompose_mth_ranges() -> None:
    assert subtree_keys(0, 0) == []
    assert subtree_keys(0, 1) == [(0, 0)]
    assert subtree_keys(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert subtree_keys(4, 7) == [(1, 2), (0, 6)]
    assert subtree_keys(8, 16) == [(3, 1)]
    assert subtree_keys(0, 1000) == [(9, 0), (8, 2), (7, 6), (6, 14), (5, 30), (3, 124)]
    for start, end in [(1, 3), (2, 5), (4, 9), (-1, 2), (3, 2)]:
        with pytest.raises(ValueError):
            subtree_keys(start, end)


# --- inclusion vectors ---------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vector_is_produced_and_verifies(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(index, size, VECTOR_STORE) == proof
    assert naive_path(index, LEAF_HASHES[:size]) == proof
    assert verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])
    assert verify_inclusion(LEAF_HASHES[index], index, size, tuple(proof), ROOTS[size])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_every_inclusion_mutation_is_refused(index: int, size: int, proof: list[bytes]) -> None:
    leaf, good_root = LEAF_HASHES[index], ROOTS[size]
    for desc, bad in proof_mutations(proof, [good_root, leaf]):
        assert not verify_inclusion(leaf, index, size, bad, good_root), desc
    for other in range(-2, 2 * size + 2):
        if other != index:
            assert not verify_inclusion(leaf, other, size, proof, good_root), f"index {other}"
    # A wrong size with the root of that size (what a checkpoint of that size would show),
    # and, as transparency-dev/merkle probes, a size whose path has another shape.
    for other_size in ROOTS:
        if other_size != size:
            assert not verify_inclusion(leaf, index, other_size, proof, ROOTS[other_size]), other_size
    for other_size in (size * 2, size // 2, 0, -1):
        assert not verify_inclusion(leaf, index, other_size, proof, good_root), other_size
    for bad_root in [*(r for r in ROOTS.values() if r != good_root), SOME_HASH, good_root[:-1]]:
        assert not verify_inclusion(leaf, index, size, proof, bad_root)
    for bit in range(256):
        assert not verify_inclusion(leaf, index, size, proof, _flip(good_root, bit)), f"root bit {bit}"
        assert not verify_inclusion(_flip(leaf, bit), index, size, proof, good_root), f"leaf bit {bit}"
    for other_leaf in LEAF_HASHES:
        if other_leaf != leaf:
            assert not verify_inclusion(other_leaf, index, size, proof, good_root)
    assert not verify_inclusion(LEAF_INPUTS[index] or b"x", index, size, proof, good_root)  # unhashed


# --- consistency vectors -------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vector_is_produced_and_verifies(first: int, second: int, proof: list[bytes]) -> None:
    assert consistency_proof(first, second, VECTOR_STORE) == proof
    assert (naive_subproof(first, LEAF_HASHES[:second], True) if first < second else []) == proof
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_every_consistency_mutation_is_refused(first: int, second: int, proof: list[bytes]) -> None:
    root1, root2 = ROOTS[first], ROOTS[second]
    for desc, bad in proof_mutations(proof, [root1, root2]):
        assert not verify_consistency(first, second, root1, root2, bad), desc
    for other in range(-1, second + 3):
        if other != first:
            if other in ROOTS:
                assert not verify_consistency(other, second, ROOTS[other], root2, proof), f"first {other}"
            assert not verify_consistency(other, second, root1, root2, proof), f"first {other}, root1"
    for other in range(0, 2 * second + 2):
        if other != second:
            if other in ROOTS:
                assert not verify_consistency(first, other, root1, ROOTS[other], proof), f"second {other}"
            if other in (second * 2, second // 2) or other < first:
                assert not verify_consistency(first, other, root1, root2, proof), f"second {other}, root2"
    assert not verify_consistency(first, second, root2, root1, proof), "swapped roots"
    for bad_root in [*ROOTS.values(), SOME_HASH, b"WrongRoot", b""]:
        if bad_root != root1:
            assert not verify_consistency(first, second, bad_root, root2, proof)
        if bad_root != root2:
            assert not verify_consistency(first, second, root1, bad_root, proof)
    for bit in range(256):
        assert not verify_consistency(first, second, _flip(root1, bit), root2, proof), f"root1 bit {bit}"
        assert not verify_consistency(first, second, root1, _flip(root2, bit), proof), f"root2 bit {bit}"


def test_trivial_consistency_cases() -> None:
    r1, r2 = ROOTS[1], ROOTS[2]
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(1, 1, r1, r1, [])
    assert not verify_consistency(0, 0, r1, r1, [])  # a size-0 tree has the empty root
    assert not verify_consistency(0, 5, r1, ROOTS[5], [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 0, r1, r2, [])
    assert not verify_consistency(2, 1, r2, r1, [])
    assert not verify_consistency(1, 2, r1, r2, [])  # empty proof for distinct sizes
    for sizes in [(0, 0), (0, 1), (1, 1)]:
        assert not verify_consistency(*sizes, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    assert consistency_proof(0, 8, VECTOR_STORE) == []
    assert consistency_proof(8, 8, VECTOR_STORE) == []


@pytest.mark.parametrize("garbage", [None, "x", 1.0, True, -1, 2**70, [1], b"\x00" * 31, [b""], [None]])
def test_verifiers_never_raise_on_garbage(garbage: object) -> None:
    leaf, good_root, proof = LEAF_HASHES[5], ROOTS[8], INCLUSION_VECTORS[2][2]
    assert not verify_inclusion(garbage, 5, 8, proof, good_root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, garbage, 8, proof, good_root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, 5, garbage, proof, good_root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, 5, 8, garbage, good_root)  # type: ignore[arg-type]
    assert not verify_inclusion(leaf, 5, 8, proof, garbage)  # type: ignore[arg-type]
    cproof = CONSISTENCY_VECTORS[2][2]
    args = [6, 8, ROOTS[6], ROOTS[8], cproof]
    for position in range(5):
        bad = list(args)
        bad[position] = garbage
        assert not verify_consistency(*bad)  # type: ignore[arg-type]


def test_proof_requests_out_of_range_raise() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(8, 8, VECTOR_STORE)
    with pytest.raises(ValueError):
        inclusion_proof(-1, 8, VECTOR_STORE)
    with pytest.raises(ValueError):
        consistency_proof(5, 4, VECTOR_STORE)
    with pytest.raises(ValueError):
        root(-1, VECTOR_STORE)
    # Asking a store about a tree it does not hold is an error, never a made-up hash.
    with pytest.raises(MissingNodeError):
        root(9, VECTOR_STORE)
    with pytest.raises(MissingNodeError):
        inclusion_proof(0, 9, VECTOR_STORE)
    with pytest.raises(MissingNodeError):
        consistency_proof(3, 9, VECTOR_STORE)


# --- properties against the naive definitions ----------------------------------------------


def _check_size(size: int, indices: Sequence[int], firsts: Sequence[int]) -> None:
    leaves = LEAVES[:size]
    expected_root = naive_root(leaves)
    reader = BoundedReader(size)
    assert root(size, reader) == expected_root
    # One batched read of at most log2(n) + 1 nodes per answer.
    budget = 2 * size.bit_length() + 1
    for index in indices:
        reader = BoundedReader(size)
        proof = inclusion_proof(index, size, reader)
        assert len(reader.calls) <= 1 and all(len(keys) <= budget for keys in reader.calls)
        assert proof == naive_path(index, leaves), (index, size)
        assert verify_inclusion(leaves[index], index, size, proof, expected_root)
    for first in firsts:
        reader = BoundedReader(size)
        proof = consistency_proof(first, size, reader)
        assert len(reader.calls) <= 1 and all(len(keys) <= budget for keys in reader.calls)
        expected = naive_subproof(first, leaves, True) if 0 < first < size else []
        assert proof == expected, (first, size)
        old_root = naive_root(LEAVES[:first])
        assert verify_consistency(first, size, old_root, expected_root, proof)
        if 0 < first < size:
            assert not verify_consistency(first, size, expected_root, old_root, proof)


def test_deterministic_sweep_matches_the_rfc_definitions() -> None:
    rng = random.Random(9162)
    sizes = list(range(1, 257)) + [n + d for n in (512, 1024) for d in (-1, 0) if n + d <= MAX_SIZE]
    sizes += [257, 300, 383, 384, 385, 511, 513, 700, 1000]
    for size in sizes:
        if size <= 64:  # small trees: every leaf and every earlier size
            _check_size(size, range(size), range(size + 1))
            continue
        indices = {0, size - 1, size // 2, rng.randrange(size), rng.randrange(size)}
        power = 1 << (size.bit_length() - 1)
        firsts = {0, 1, size - 1, size, size // 2, power, power - 1, rng.randint(0, size)}
        _check_size(size, sorted(indices), sorted(firsts))


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_property_node_store_equals_naive_definitions(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_SIZE), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(0, size), label="first")
    _check_size(size, [index], [first])


@settings(max_examples=100, deadline=None, database=None)
@given(batches=st.lists(st.integers(0, 80), max_size=12), resume_at=st.integers(0, 12))
def test_property_builder_batches_equal_building_at_once(batches: list[int], resume_at: int) -> None:
    total = sum(batches)
    stored = MemoryNodes()
    builder = TreeBuilder()
    size = 0
    for number, count in enumerate(batches):
        if number == resume_at:
            # The integrator restarts: only the size and the stored frontier survive.
            builder = TreeBuilder.resume(size, stored)
        result = builder.append(LEAVES[size:size + count])
        stored.put_nodes(result.nodes)
        size += count
        assert result.tree_size == builder.tree_size == size
        assert result.root == builder.root == naive_root(LEAVES[:size])
        assert list(result.frontier) == TreeBuilder.frontier_keys(size)
        assert result.frontier == STORE.get_nodes(TreeBuilder.frontier_keys(size))
    at_once = TreeBuilder().append(LEAVES[:total])
    assert stored.get_nodes(list(at_once.nodes)) == at_once.nodes
    assert len(stored) == len(at_once.nodes)
    # A tree of n leaves has 2n - popcount(n) perfect subtrees: each appended leaf costs O(1)
    # hashes on average.
    assert len(at_once.nodes) == 2 * total - bin(total).count("1")
    assert at_once.root == naive_root(LEAVES[:total])


# --- builder and store edge cases ----------------------------------------------------------


def test_builder_refuses_a_wrong_frontier_and_bad_leaves() -> None:
    keys = TreeBuilder.frontier_keys(7)
    assert keys == [(2, 0), (1, 2), (0, 6)]
    frontier = VECTOR_STORE.get_nodes(keys)
    assert TreeBuilder(7, frontier).root == ROOTS[7]
    with pytest.raises(ValueError):
        TreeBuilder(6, frontier)
    with pytest.raises(ValueError):
        TreeBuilder(7, {**frontier, (0, 6): b"short"})
    with pytest.raises(ValueError):
        TreeBuilder(-1)
    with pytest.raises(MissingNodeError):
        TreeBuilder.resume(9, VECTOR_STORE)
    builder = TreeBuilder(7, frontier)
    with pytest.raises(ValueError):
        builder.append([LEAF_HASHES[7], b"not a hash"])
    assert builder.tree_size == 7 and builder.root == ROOTS[7]  # all or nothing
    result = builder.append([LEAF_HASHES[7]])
    assert result.root == ROOTS[8]
    assert result.nodes == {(0, 7): LEAF_HASHES[7], (1, 3): VECTOR_STORE.get_nodes([(1, 3)])[(1, 3)],
                            (2, 1): VECTOR_STORE.get_nodes([(2, 1)])[(2, 1)], (3, 0): ROOTS[8]}
    assert result.frontier == {(3, 0): ROOTS[8]}
    assert builder.append([]).root == ROOTS[8]
    assert TreeBuilder().root == EMPTY_ROOT


def test_memory_store_is_append_only() -> None:
    store = MemoryNodes({(0, 0): LEAF_HASHES[0]})
    store.put_nodes({(0, 0): LEAF_HASHES[0]})  # idempotent
    with pytest.raises(ValueError):
        store.put_nodes({(0, 0): LEAF_HASHES[1]})
    assert store.get_nodes([(0, 0), (0, 1)]) == {(0, 0): LEAF_HASHES[0]}
    assert isinstance(store, NodeReader)
    assert isinstance(BoundedReader(1), NodeReader)
