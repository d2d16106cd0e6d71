"""The perfect-subtree store cut into tiles: a few wide rows instead of one row per node.

A log of n leaves has 2n - popcount(n) perfect subtrees (``merkle.Key``). Storing each as a row
costs two database rows per entry; a tile instead holds a whole slab of them, in the spirit of
C2SP tlog-tiles but keeping the interior hashes, so that nothing is recomputed when reading.

Tile ``(level, index)`` of height ``H`` holds every node at tree levels ``H*level`` to
``H*level + H - 1`` below the node ``(H*(level + 1), index)`` (the tile's root, which is not in
the tile: it is a bottom-row node of tile ``(level + 1, index >> H)``). Every node belongs to
exactly one tile. Inside a tile the hashes are 32-byte strings concatenated in *post-order*,
which is the order in which appending leaves completes them; so a tile that is not yet full is
a prefix of its final content, integration only ever appends to the right-edge tile of each
level, and a node is present exactly when its position is below the tile's length.

A full tile of height 8 holds 2^9 - 2 = 510 hashes (16,320 bytes): about 64 bytes and 1/256
of a row per entry, against two rows per entry for one row per node. A proof reads one tile per
``H`` tree levels on its path plus the right-edge tiles, so O(log n / H) rows in one query,
takes the O(log n) stored subtree hashes it needs straight out of them and folds them exactly
as before (``merkle``): nothing below a stored subtree is ever rehashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Key,
    MissingNodeError,
    NodeReader,
    subtree_keys,
)

HEIGHT = 8
"""Tree levels per tile. Part of the stored format: changing it means rewriting the tiles."""

TileKey = tuple[int, int]
"""``(tile level, tile index)``."""


def completed(m: int) -> int:
    """Perfect subtrees completed by appending ``m`` leaves: 2m - popcount(m)."""
    return 2 * m - m.bit_count()


def locate(key: Key, height: int = HEIGHT) -> tuple[TileKey, int]:
    """The tile holding node ``(level, index)`` and the node's position (in hashes) in it."""
    level, index = key
    tile_level, j = divmod(level, height)
    shift = height - j
    tile_index = index >> shift
    local = index - (tile_index << shift)
    # Appending bottom-row node m - 1 completes it, then merges at levels 1, 2, ...: the node
    # at local level j completes as the j-th merge of appending bottom-row node m - 1.
    m = (local + 1) << j
    return (tile_level, tile_index), completed(m - 1) + j


def tile_length(bottom: int, height: int = HEIGHT) -> int:
    """Hashes in a tile whose bottom row has ``bottom`` nodes (its root is never stored)."""
    return completed(bottom) - (1 if bottom == 1 << height else 0)


def right_edge(tree_size: int, height: int = HEIGHT) -> dict[TileKey, int]:
    """The tiles that are not full in the tree of ``tree_size`` leaves, with their lengths
    in hashes. They hold the whole frontier, and they are the only tiles that appending
    more leaves extends."""
    edge: dict[TileKey, int] = {}
    level, size = 0, tree_size
    while size:
        bottom = size & ((1 << height) - 1)
        if bottom:
            edge[(level, size >> height)] = tile_length(bottom, height)
        level, size = level + 1, size >> height
    return edge


def pack(nodes: Mapping[Key, bytes], existing: Mapping[TileKey, bytes],
         height: int = HEIGHT) -> dict[TileKey, bytes]:
    """Append newly completed nodes (in completion order, as ``TreeBuilder.append`` returns
    them) to their tiles; ``existing`` holds the current content of the right-edge tiles.

    Returns the new content of every tile that changed. Raises ``ValueError`` if a node does
    not land exactly at the end of its tile, which would mean the nodes are out of order or
    ``existing`` is not the stored right edge.
    """
    out: dict[TileKey, bytearray] = {}
    for key, value in nodes.items():
        tile, position = locate(key, height)
        buffer = out.get(tile)
        if buffer is None:
            buffer = out[tile] = bytearray(existing.get(tile, b""))
        if len(buffer) != position * HASH_SIZE or len(value) != HASH_SIZE:
            raise ValueError(f"node {key} does not extend tile {tile} at position {position}")
        buffer += value
    return {tile: bytes(buffer) for tile, buffer in out.items()}


@dataclass(frozen=True)
class TileAppend:
    """What appending a batch of leaves did to the tiles."""

    tree_size: int
    root: bytes
    tiles: dict[TileKey, bytes]
    """The new content of every tile the batch changed (new ones included)."""


def append_leaves(tree_size: int, edge: Mapping[TileKey, bytes], leaves: Sequence[bytes],
                  height: int = HEIGHT) -> TileAppend:
    """Append leaf hashes to the tree of ``tree_size`` leaves whose right-edge tiles are
    ``edge`` (as stored), writing every perfect subtree they complete into its tile.

    The same binary-counter merge as ``merkle.TreeBuilder.append``, writing hashes straight
    into tile buffers: the integrator's hot loop, which allocates no per-node objects.
    Raises ``MissingNodeError`` if ``edge`` is not the right edge of a tree of that size and
    ``ValueError`` (before anything is computed) if a leaf is not a 32-byte hash.
    """
    expected = right_edge(tree_size, height)
    if set(edge) != set(expected) or any(len(edge[t]) != n * HASH_SIZE for t, n in expected.items()):
        raise MissingNodeError(f"stored right-edge tiles {sorted(edge)} do not match a tree of "
                               f"size {tree_size} (expected {expected})")
    for leaf in leaves:
        if not isinstance(leaf, bytes | bytearray) or len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hashes must be {HASH_SIZE} bytes, got {leaf!r:.80}")
    # The frontier (one perfect subtree per set bit of the size, largest first) as two lists.
    found = nodes_from_tiles(subtree_keys(0, tree_size), edge, height)
    levels = [level for level, _ in subtree_keys(0, tree_size)]
    hashes = [found[(level, index)] for level, index in subtree_keys(0, tree_size)]
    # The right-edge tile being written at each tile level: its index and content.
    current: dict[int, tuple[int, bytearray]] = {
        level: (index, bytearray(edge[(level, index)])) for level, index in expected}
    done: dict[TileKey, bytes] = {}
    full = tile_length(1 << height, height) * HASH_SIZE
    sha256 = hashlib.sha256
    size = tree_size

    def buffer(level: int, index: int) -> bytearray:
        """The tile buffer for node (level, index), starting a new tile where one filled."""
        tile_level, j = divmod(level, height)
        tile_index = index >> (height - j)
        entry = current.get(tile_level)
        if entry is None or entry[0] != tile_index:
            if entry is not None:
                if len(entry[1]) != full:
                    raise RuntimeError(f"tile {(tile_level, entry[0])} left incomplete")
                done[(tile_level, entry[0])] = bytes(entry[1])
            entry = current[tile_level] = (tile_index, bytearray())
        return entry[1]

    level0: tuple[int, bytearray] | None = None
    for leaf in leaves:
        # Level 0 changes tile every 2^height leaves: keep its buffer at hand.
        if level0 is None or size >> height != level0[0]:
            buf = buffer(0, size)
            level0 = current[0]
        else:
            buf = level0[1]
        buf += leaf
        value = bytes(leaf)
        level = 0
        size += 1
        while levels and levels[-1] == level:
            levels.pop()
            value = sha256(b"\x01" + hashes.pop() + value).digest()
            level += 1
            buffer(level, (size >> level) - 1).extend(value)
        levels.append(level)
        hashes.append(value)

    for tile_level, (index, content) in current.items():
        done[(tile_level, index)] = bytes(content)
    changed = {key: value for key, value in done.items() if edge.get(key) != value}
    # Every tile must hold exactly the nodes a tree of the new size has completed in it.
    final = right_edge(size, height)
    for key, value in changed.items():
        want = final.get(key, tile_length(1 << height, height)) * HASH_SIZE
        if len(value) != want:
            raise RuntimeError(f"tile {key} has {len(value)} bytes, expected {want}")
    root = hashes[-1] if hashes else EMPTY_ROOT
    for left in reversed(hashes[:-1]):
        root = sha256(b"\x01" + left + root).digest()
    return TileAppend(tree_size=size, root=root, tiles=changed)


def leaf_hashes(tile: bytes, first: int, count: int) -> list[bytes]:
    """Leaf hashes ``first`` .. ``first + count - 1`` (tile-local) of a level-0 tile; fewer if
    the tile is shorter."""
    out = []
    for local in range(first, first + count):
        start = completed(local) * HASH_SIZE
        value = tile[start:start + HASH_SIZE]
        if len(value) != HASH_SIZE:
            break
        out.append(value)
    return out


def nodes_from_tiles(keys: Iterable[Key], tiles: Mapping[TileKey, bytes],
                     height: int = HEIGHT) -> dict[Key, bytes]:
    """The hashes of ``keys`` found in ``tiles``; keys not (yet) stored are left out."""
    found: dict[Key, bytes] = {}
    for key in keys:
        tile, position = locate(key, height)
        content = tiles.get(tile)
        if content is None:
            continue
        start = position * HASH_SIZE
        value = content[start:start + HASH_SIZE]
        if len(value) == HASH_SIZE:
            found[key] = bytes(value)
    return found


def tiles_of(keys: Iterable[Key], height: int = HEIGHT) -> list[TileKey]:
    """The distinct tiles holding ``keys``, in first-seen order."""
    return list(dict.fromkeys(locate(key, height)[0] for key in keys))


class MemoryTiles(NodeReader):
    """A dict of tiles, for tests: the same layout the database stores."""

    def __init__(self, height: int = HEIGHT) -> None:
        self.height = height
        self.tiles: dict[TileKey, bytes] = {}
        self.reads: list[list[TileKey]] = []

    def right_edge_content(self, tree_size: int) -> dict[TileKey, bytes]:
        return {tile: self.tiles[tile] for tile in right_edge(tree_size, self.height)}

    def write(self, nodes: Mapping[Key, bytes], tree_size_before: int) -> dict[TileKey, bytes]:
        changed = pack(nodes, self.right_edge_content(tree_size_before), self.height)
        self.tiles.update(changed)
        return changed

    def get_nodes(self, keys: list[Key]) -> dict[Key, bytes]:
        wanted = tiles_of(keys, self.height)
        self.reads.append(wanted)
        return nodes_from_tiles(keys, {t: self.tiles[t] for t in wanted if t in self.tiles},
                                self.height)
