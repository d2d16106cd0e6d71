"""RFC 9162 section 2.1 Merkle tree over a store of perfect-subtree hashes.

The tree is never rebuilt to answer a question. Every complete ("perfect") subtree of the log
is stored once, under the key ``(level, index)``: the hash of the subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``, level 0 being the leaf hashes. A perfect subtree
never changes once its last leaf is appended, so the store is append-only, and any range that
RFC 9162's MTH recursion visits is the concatenation of at most log2(n) + 1 of them. A root, an
inclusion proof or a consistency proof is then computed by:

1. working out every range whose hash the answer needs (pure arithmetic on sizes),
2. fetching all their perfect-subtree keys in one batched ``NodeReader.get_nodes`` call
   (one database query per proof for the DB-backed reader), and
3. folding those hashes: O(log n) reads and hashes per answer.

``TreeBuilder`` is the write side: it appends leaf hashes to the right edge of the tree
(the "frontier") and reports the perfect-subtree nodes each batch completes.

The verification functions implement RFC 9162 2.1.3.2 and 2.1.4.2 literally and never raise:
malformed input is simply "not verified".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "AppendResult",
    "Key",
    "MemoryNodes",
    "MissingNodeError",
    "NodeReader",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_keys",
    "verify_consistency",
    "verify_inclusion",
]

Key = tuple[int, int]
"""``(level, index)``: the perfect subtree over leaves [index * 2**level, (index + 1) * 2**level)."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (RFC 9162 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the hash of one log entry."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@runtime_checkable
class NodeReader(Protocol):
    """Read access to stored perfect-subtree hashes."""

    def get_nodes(self, keys: list[Key]) -> dict[Key, bytes]:
        """The stored hashes of ``keys``; keys not stored are simply absent from the result.

        Called once per root or proof, with every key that answer needs, so that a
        database-backed reader can serve it with a single query.
        """
        ...


class MissingNodeError(LookupError):
    """The node store lacks a perfect subtree the computation needs (the tree is not that big,
    or the store is incomplete)."""


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_size(value: object) -> bool:
    # bool is an int subclass; True is not a tree size.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def subtree_keys(start: int, end: int) -> list[Key]:
    """The perfect subtrees whose concatenation is the leaf range ``[start, end)``, largest first.

    Defined for the ranges that RFC 9162's MTH recursion visits: those whose ``start`` is a
    multiple of the smallest power of two not below ``end - start``. For such a range, the
    first element is MTH's left half ``D[start:start+k]`` and the rest decompose its right half,
    so ``MTH(D[start:end])`` is the right fold ``node_hash(h0, node_hash(h1, ... h_last))``.
    An empty range has no subtrees. Other ranges raise ``ValueError``: they are not subtrees
    of any RFC 9162 tree, and decomposing them would need O(size) pieces.
    """
    if not (_is_size(start) and _is_size(end)) or start < 0 or end < start:
        raise ValueError(f"invalid leaf range [{start!r}, {end!r})")
    size = end - start
    if size == 0:
        return []
    span = 1 << (size - 1).bit_length()
    if start % span:
        raise ValueError(f"leaf range [{start}, {end}) is not a subtree of an RFC 9162 tree")
    keys: list[Key] = []
    position = start
    # Binary digits of the size, high to low: each set bit is one aligned perfect subtree.
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            keys.append((level, position >> level))
            position += 1 << level
    return keys


def _range_hashes(ranges: Sequence[tuple[int, int]], reader: NodeReader) -> list[bytes]:
    """MTH of each (non-empty, MTH-aligned) range, from one batched read of the store."""
    per_range = [subtree_keys(start, end) for start, end in ranges]
    wanted = list(dict.fromkeys(key for keys in per_range for key in keys))
    found = reader.get_nodes(wanted) if wanted else {}
    missing = [key for key in wanted if key not in found]
    if missing:
        raise MissingNodeError(f"node store lacks perfect subtrees {missing[:5]}"
                               f"{' …' if len(missing) > 5 else ''} (level, index)")
    hashes: list[bytes] = []
    for keys in per_range:
        value = bytes(found[keys[-1]])
        for key in reversed(keys[:-1]):
            value = node_hash(bytes(found[key]), value)
        hashes.append(value)
    return hashes


def root(tree_size: int, reader: NodeReader) -> bytes:
    """MTH(D[0:tree_size]) (RFC 9162 2.1.1), from at most log2(n) + 1 stored nodes."""
    if not _is_size(tree_size) or tree_size < 0:
        raise ValueError(f"invalid tree size {tree_size!r}")
    if tree_size == 0:
        return EMPTY_ROOT
    return _range_hashes([(0, tree_size)], reader)[0]


def inclusion_proof(index: int, tree_size: int, reader: NodeReader) -> list[bytes]:
    """PATH(index, D[0:tree_size]) (RFC 9162 2.1.3.1): sibling hashes, leaf level first.

    Only one sibling on the path can be an imperfect subtree (the first right sibling met
    where the path turns left below an imperfect range), so the proof costs O(log n) nodes.
    """
    if not (_is_size(index) and _is_size(tree_size)) or not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index!r} is not in a tree of size {tree_size!r}")
    siblings: list[tuple[int, int]] = []  # top-down; PATH lists them bottom-up
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            # PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])
            siblings.append((lo, lo + k))
            lo += k
    siblings.reverse()
    return _range_hashes(siblings, reader)


def consistency_proof(first: int, second: int, reader: NodeReader) -> list[bytes]:
    """PROOF(first, D[0:second]) = SUBPROOF(first, D[0:second], true) (RFC 9162 2.1.4.1).

    RFC 9162 defines the proof for 0 < first < second; for ``first == second`` it is empty
    (SUBPROOF(m, D[m], true) = {}) and a tree of size 0 is consistent with every tree, so
    ``first == 0`` also gives the empty proof. ``first > second`` raises ``ValueError``.
    """
    if not (_is_size(first) and _is_size(second)) or not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first!r} to size {second!r}")
    if first == 0 or first == second:
        return []
    parts: list[tuple[int, int]] = []  # top-down; SUBPROOF lists them bottom-up
    lo, hi = 0, second
    complete = True  # SUBPROOF's b: the subtree is still the whole old tree's prefix
    while True:
        n, m = hi - lo, first - lo
        if m == n:
            # SUBPROOF(m, D[m], true) = {}; SUBPROOF(m, D[m], false) = {MTH(D[m])}
            if not complete:
                parts.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            parts.append((lo + k, hi))
            hi = lo + k
        else:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            parts.append((lo, lo + k))
            lo += k
            complete = False
    parts.reverse()
    return _range_hashes(parts, reader)


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` show ``leaf_hash`` at ``index`` in the tree ``root``?

    Returns False, never raises, for any malformed input (hashes not 32 bytes, index out of
    range, a proof of the wrong length). Note that the proof binds the index and the root;
    the tree size only shapes the path, which is why the root must come from a checkpoint
    that commits to that size.
    """
    if not (_is_size(index) and _is_size(tree_size)) or not 0 <= index < tree_size:
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root)):
        return False
    if not isinstance(proof, list | tuple) or not all(_is_hash(p) for p in proof):
        return False
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            r = node_hash(bytes(p), r)
            if not fn & 1:
                # The right edge of an imperfect tree: skip the levels where this
                # subtree has no right sibling.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, bytes(p))
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: is the tree ``second_root`` (size ``second``) an append-only
    extension of the tree ``first_root`` (size ``first``)?

    Beyond the RFC's 0 < first < second: ``first == second`` verifies only with an empty
    proof and equal roots; ``first == 0`` verifies only with an empty proof and
    ``first_root`` equal to the empty-tree hash (stricter than transparency-dev/merkle, which
    ignores the roots there). Returns False, never raises, for any malformed input.
    """
    if not (_is_size(first) and _is_size(second)) or not 0 <= first <= second:
        return False
    if not (_is_hash(first_root) and _is_hash(second_root)):
        return False
    if not isinstance(proof, list | tuple) or not all(_is_hash(p) for p in proof):
        return False
    if first == second:
        return not proof and first_root == second_root and (first > 0 or first_root == EMPTY_ROOT)
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    path = [bytes(p) for p in proof]
    if (first & (first - 1)) == 0:
        # A power-of-two old tree is itself a node of the new tree: the proof omits it.
        path.insert(0, bytes(first_root))
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # proof longer than the path
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


@dataclass(frozen=True)
class AppendResult:
    """What one ``TreeBuilder.append`` batch produced."""

    tree_size: int
    nodes: dict[Key, bytes]
    """Every perfect subtree the batch completed (its leaves at level 0 included): store these."""
    frontier: dict[Key, bytes]
    """The right-edge perfect subtrees of the new tree, largest first."""
    root: bytes


class TreeBuilder:
    """Appends leaf hashes to a tree known only by its size and its frontier.

    The frontier is ``subtree_keys(0, tree_size)``: the perfect subtrees along the right edge,
    one per set bit of the size. Appending a leaf works like incrementing a binary counter:
    push it, then merge equal-level neighbours. Each merge completes one stored node, and a
    tree of n leaves has fewer than 2n nodes, so appending n leaves costs O(n) hashes
    (plus O(log n) for the root of each batch).
    """

    def __init__(self, tree_size: int = 0, frontier: Mapping[Key, bytes] | None = None) -> None:
        if not _is_size(tree_size) or tree_size < 0:
            raise ValueError(f"invalid tree size {tree_size!r}")
        expected = subtree_keys(0, tree_size)
        given = dict(frontier or {})
        if set(given) != set(expected):
            raise ValueError(f"the frontier of a tree of size {tree_size} is exactly {expected}, "
                             f"got {sorted(given, reverse=True)}")
        if not all(_is_hash(value) for value in given.values()):
            raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes")
        self._size = tree_size
        # (level, index, hash), levels strictly decreasing: the binary digits of the size.
        self._stack: list[tuple[int, int, bytes]] = [
            (level, index, bytes(given[(level, index)])) for level, index in expected]

    @staticmethod
    def frontier_keys(tree_size: int) -> list[Key]:
        """The node keys a caller must load to resume building a tree of ``tree_size`` leaves."""
        return subtree_keys(0, tree_size)

    @classmethod
    def resume(cls, tree_size: int, reader: NodeReader) -> TreeBuilder:
        """A builder for the stored tree of ``tree_size`` leaves, its frontier read in one call."""
        keys = cls.frontier_keys(tree_size)
        found = reader.get_nodes(keys) if keys else {}
        missing = [key for key in keys if key not in found]
        if missing:
            raise MissingNodeError(f"node store lacks frontier nodes {missing} of size {tree_size}")
        return cls(tree_size, {key: found[key] for key in keys})

    @property
    def tree_size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> dict[Key, bytes]:
        """The right-edge perfect subtrees, largest first (keys as ``frontier_keys``)."""
        return {(level, index): value for level, index, value in self._stack}

    @property
    def root(self) -> bytes:
        """MTH of the tree so far: the right fold of the frontier."""
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][2]
        for _, _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value

    def append(self, leaf_hashes: Iterable[bytes], *, keep_nodes: bool = True) -> AppendResult:
        """Append a batch of leaf hashes (not entries: hash them with ``leaf_hash`` first).

        Returns the nodes the batch completed (none with ``keep_nodes=False``, for a caller
        that only wants the root, such as the verifier), the new frontier and the new root.
        The batch is all or nothing: a malformed hash raises ``ValueError`` before anything
        changes.
        """
        batch: list[bytes] = []
        for h in leaf_hashes:
            if not _is_hash(h):
                raise ValueError(f"leaf hashes must be {HASH_SIZE} bytes, got {h!r:.80}")
            batch.append(bytes(h))
        nodes: dict[Key, bytes] = {}
        stack = self._stack
        size = self._size
        for value in batch:
            level, index = 0, size
            if keep_nodes:
                nodes[(0, index)] = value
            while stack and stack[-1][0] == level:
                _, left_index, left = stack.pop()
                value = node_hash(left, value)
                level, index = level + 1, left_index >> 1
                if keep_nodes:
                    nodes[(level, index)] = value
            stack.append((level, index, value))
            size += 1
        self._size = size
        return AppendResult(tree_size=size, nodes=nodes, frontier=self.frontier, root=self.root)


class MemoryNodes(NodeReader):
    """A dict-backed node store, for tests and for the offline verifier.

    Append-only like the real store: writing a different hash under an existing key raises
    ``ValueError`` (a perfect subtree never changes once complete).
    """

    def __init__(self, nodes: Mapping[Key, bytes] | None = None) -> None:
        self._nodes: dict[Key, bytes] = {}
        if nodes:
            self.put_nodes(nodes)

    @classmethod
    def from_leaf_hashes(cls, leaf_hashes: Iterable[bytes]) -> MemoryNodes:
        """The complete node store of the tree with these leaf hashes."""
        return cls(TreeBuilder().append(leaf_hashes).nodes)

    def get_nodes(self, keys: list[Key]) -> dict[Key, bytes]:
        """The stored hashes of ``keys``; absent keys are left out."""
        return {key: self._nodes[key] for key in keys if key in self._nodes}

    def put_nodes(self, nodes: Mapping[Key, bytes]) -> None:
        """Store nodes; rewriting a key with the same hash is a no-op."""
        for key, value in nodes.items():
            existing = self._nodes.get(key)
            if existing is not None and existing != value:
                raise ValueError(f"node {key} already stored with a different hash")
        self._nodes.update((key, bytes(value)) for key, value in nodes.items())

    def __len__(self) -> int:
        return len(self._nodes)
