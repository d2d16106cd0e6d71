"""The tiled node store: the same perfect subtrees as the one-row-per-node store, the same roots
and proofs as RFC 9162's recursive definitions, for many sizes, batch splits and tile heights;
and the database tiles the integrator writes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from gateway.evidence import merkle, service, tiles
from gateway.evidence.models import EvidenceEntry, EvidenceTile
from tests.gateway.evidence.test_merkle import (
    LEAVES,
    MAX_SIZE,
    STORE,
    naive_path,
    naive_root,
    naive_subproof,
)

HEIGHTS = [1, 2, 3, 8]


def build(sizes: list[int], height: int) -> tuple[tiles.MemoryTiles, list[bytes]]:
    """Tiles written batch by batch, as the integrator does; returns the root after each."""
    store = tiles.MemoryTiles(height)
    roots = []
    size = 0
    for count in sizes:
        result = tiles.append_leaves(size, store.right_edge_content(size),
                                     LEAVES[size:size + count], height)
        store.tiles.update(result.tiles)
        size += count
        assert result.tree_size == size
        roots.append(result.root)
    return store, roots


def test_positions_are_post_order() -> None:
    # A tile of height 2: leaves 0..3 and their parents, in completion order.
    order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1)]
    assert [tiles.locate(key, 2) for key in order] == [((0, 0), p) for p in range(6)]
    assert tiles.locate((2, 0), 2) == ((1, 0), 0)  # the tile's root opens the next level
    assert tiles.locate((0, 4), 2) == ((0, 1), 0)
    assert tiles.locate((3, 0), 2) == ((1, 0), 2)
    assert tiles.locate((3, 1), 2) == ((1, 0), 5)
    assert [tiles.tile_length(m, 2) for m in range(5)] == [0, 1, 3, 4, 6]
    assert tiles.right_edge(0, 2) == {}
    assert tiles.right_edge(4, 2) == {(1, 0): 1}
    assert tiles.right_edge(7, 2) == {(0, 1): 4, (1, 0): 1}
    assert tiles.tile_length(256) * merkle.HASH_SIZE == 16_320


@pytest.mark.parametrize("height", HEIGHTS)
def test_every_node_lands_in_exactly_one_tile_slot(height: int) -> None:
    nodes = merkle.TreeBuilder().append(LEAVES[:MAX_SIZE]).nodes
    slots = [tiles.locate(key, height) for key in nodes]
    assert len(set(slots)) == len(slots)
    store, _ = build([MAX_SIZE], height)
    assert tiles.nodes_from_tiles(list(nodes), store.tiles, height) == nodes


@pytest.mark.parametrize("height", HEIGHTS)
def test_batched_tiles_equal_the_node_store(height: int) -> None:
    rng = random.Random(height)
    for _ in range(20):
        sizes = []
        while sum(sizes) < MAX_SIZE:
            sizes.append(min(rng.choice([0, 1, 2, 3, 7, 64, 255, 256, 257, 300]),
                             MAX_SIZE - sum(sizes)))
        store, roots = build(sizes, height)
        total = 0
        for count, value in zip(sizes, roots, strict=True):
            total += count
            assert value == (naive_root(LEAVES[:total]) if total <= 64 else merkle.root(total, STORE))
        keys = list(merkle.TreeBuilder().append(LEAVES[:MAX_SIZE]).nodes)
        assert tiles.nodes_from_tiles(keys, store.tiles, height) == STORE.get_nodes(keys)
        # The same tiles as packing TreeBuilder's nodes (the reference write path).
        packed = tiles.MemoryTiles(height)
        size = 0
        for count in sizes:
            packed.write(merkle.TreeBuilder.resume(size, STORE).append(LEAVES[size:size + count])
                         .nodes, size)
            size += count
        assert packed.tiles == store.tiles


@pytest.mark.parametrize("height", HEIGHTS)
def test_proofs_from_tiles_equal_the_rfc_definitions(height: int) -> None:
    rng = random.Random(9162 + height)
    store, _ = build([MAX_SIZE], height)
    sizes = list(range(1, 80)) + [127, 128, 129, 255, 256, 257, 511, 512, 513, 700, 1023, 1024]
    for size in sizes:
        leaves = LEAVES[:size]
        assert merkle.root(size, store) == naive_root(leaves)
        for index in {0, size - 1, size // 2, rng.randrange(size)}:
            store.reads.clear()
            assert merkle.inclusion_proof(index, size, store) == naive_path(index, leaves)
            # One batched read of a few tiles: one per `height` levels on the path, plus the
            # right edge.
            assert len(store.reads) <= 1
            assert all(len(read) <= 2 * (size.bit_length() // height + 2) for read in store.reads)
        for first in {1, size // 2, size - 1, size, rng.randint(1, size)} - {0}:
            expected = naive_subproof(first, leaves, True) if first < size else []
            assert merkle.consistency_proof(first, size, store) == expected


@settings(max_examples=100, deadline=None, database=None)
@given(batches=st.lists(st.integers(0, 150), min_size=1, max_size=10),
       height=st.sampled_from(HEIGHTS), data=st.data())
def test_property_tiles_answer_like_the_naive_tree(batches: list[int], height: int,
                                                   data: st.DataObject) -> None:
    capped: list[int] = []  # at most MAX_SIZE leaves in all
    for b in batches:
        capped.append(min(b, MAX_SIZE - sum(capped)))
    batches = capped
    store, roots = build(batches, height)
    size = sum(batches)
    if size == 0:
        assert roots[-1] == merkle.EMPTY_ROOT
        return
    assert roots[-1] == naive_root(LEAVES[:size])
    tree_size = data.draw(st.integers(1, size), label="tree_size")
    index = data.draw(st.integers(0, tree_size - 1), label="index")
    first = data.draw(st.integers(1, tree_size), label="first")
    leaves = LEAVES[:tree_size]
    assert merkle.inclusion_proof(index, tree_size, store) == naive_path(index, leaves)
    expected = naive_subproof(first, leaves, True) if first < tree_size else []
    assert merkle.consistency_proof(first, tree_size, store) == expected
    # A partial tile is a prefix of its final content.
    final, _ = build([MAX_SIZE], height)
    for key, content in store.tiles.items():
        assert final.tiles[key].startswith(content)


def test_append_refuses_a_wrong_edge_and_bad_leaves() -> None:
    store, _ = build([300], 8)
    edge = store.right_edge_content(300)
    with pytest.raises(merkle.MissingNodeError):
        tiles.append_leaves(301, edge, LEAVES[301:302])
    with pytest.raises(merkle.MissingNodeError):
        tiles.append_leaves(300, {key: value[:-32] for key, value in edge.items()}, LEAVES[300:301])
    with pytest.raises(merkle.MissingNodeError):
        tiles.append_leaves(300, {}, LEAVES[300:301])
    with pytest.raises(ValueError):
        tiles.append_leaves(300, edge, [LEAVES[300], b"short"])
    unchanged = tiles.append_leaves(300, edge, [])
    assert unchanged.tiles == {} and unchanged.root == naive_root(LEAVES[:300])
    with pytest.raises(ValueError):
        tiles.pack({(0, 5): LEAVES[5]}, {}, 8)  # not the end of its tile


def test_database_tiles_after_integration(database) -> None:
    """The integrator's tiles hold the whole tree: every stored node and proof as the naive
    tree has them, entries numbered in arrival order, partial tiles rewritten in place."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway import clock

    log = service.Log("test.example/log", Ed25519PrivateKey.generate())
    canonical = [b"entry %d" % i for i in range(700)]
    leaves = [merkle.leaf_hash(c) for c in canonical]
    done = 0
    for count in (1, 2, 5, 250, 1, 0, 300, 141):
        rows = [{"id": f"ev_{i}", "kind": "call", "canonical": canonical[i],
                 "leaf_hash": leaves[i], "idx": None, "created_at": clock.utcnow()}
                for i in range(done, done + count)]
        if rows:
            with database.transaction() as session:
                session.connection().execute(insert(EvidenceEntry.__table__), rows)
        assert service.integrate(database, log, batch=128) == count
        done += count
    with database.transaction() as session:
        numbered = session.execute(select(EvidenceEntry.id, EvidenceEntry.idx)
                                   .order_by(EvidenceEntry.seq)).all()
        assert numbered == [(f"ev_{i}", i) for i in range(done)]
        stored = {(level, index): bytes(value) for level, index, value in session.execute(
            select(EvidenceTile.level, EvidenceTile.index, EvidenceTile.hashes))}
        nodes = merkle.TreeBuilder().append(leaves).nodes
        assert tiles.nodes_from_tiles(list(nodes), stored) == nodes
        assert set(stored) == set(build([done], tiles.HEIGHT)[0].tiles)
        for size in (1, 2, 3, 8, 255, 256, 257, 512, 600, done):
            for index in {0, size // 3, size - 1}:
                assert service.inclusion(session, index, size) == naive_path(index, leaves[:size])
            for first in {1, max(1, size // 2), size}:
                want = naive_subproof(first, leaves[:size], True) if first < size else []
                assert service.consistency(session, first, size) == want


def test_integration_numbers_across_gaps_in_the_sequence(database) -> None:
    """Rolled-back appends leave gaps in `seq` on PostgreSQL: the log index stays gapless and
    in arrival order, each run of consecutive sequence numbers numbered by one statement."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway import clock

    log = service.Log("test.example/log", Ed25519PrivateKey.generate())
    rows = [{"id": f"ev_{i}", "kind": "call", "canonical": b"%d" % i,
             "leaf_hash": merkle.leaf_hash(b"%d" % i), "idx": None, "created_at": clock.utcnow()}
            for i in range(12)]
    with database.transaction() as session:
        session.connection().execute(insert(EvidenceEntry.__table__), rows)
        seqs = list(session.scalars(select(EvidenceEntry.seq).order_by(EvidenceEntry.seq)))
        gone = {seqs[2], seqs[3], seqs[7], seqs[11]}
        session.execute(EvidenceEntry.__table__.delete().where(EvidenceEntry.seq.in_(gone)))
    assert service.integrate(database, log) == 8
    with database.transaction() as session:
        numbered = session.execute(select(EvidenceEntry.id, EvidenceEntry.idx)
                                   .order_by(EvidenceEntry.seq)).all()
        kept = [r for r, s in zip(rows, seqs, strict=True) if s not in gone]
        assert numbered == [(r["id"], i) for i, r in enumerate(kept)]
        leaves = [r["leaf_hash"] for r in kept]
        assert service.inclusion(session, 5, 8) == naive_path(5, leaves)


def test_builder_without_nodes_gives_the_same_roots() -> None:
    """The verifier's root-only appends agree with the recording builder batch by batch."""
    rng = random.Random(6962)
    recording, lean = merkle.TreeBuilder(), merkle.TreeBuilder()
    size = 0
    while size < MAX_SIZE:
        count = min(rng.randint(0, 90), MAX_SIZE - size)
        full = recording.append(LEAVES[size:size + count])
        result = lean.append(LEAVES[size:size + count], keep_nodes=False)
        size += count
        assert result.nodes == {} and result.tree_size == size
        assert result.root == full.root and result.frontier == full.frontier
    assert lean.root == naive_root(LEAVES[:MAX_SIZE])
