"""The packed-array data feed (tmf.ssl.feed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pretrain_toy import make_packed

from tmf.data.packed import open_packed
from tmf.ssl.feed import PackedFeed


@pytest.fixture()
def packed(tmp_path):
    return make_packed(tmp_path, n_per_split=(6, 10, 4), size=16)


def test_rows_of_the_pretraining_splits(packed):
    manifest, packed_dir, _ = packed
    assert PackedFeed(open_packed(manifest, packed_dir), ["labeled", "unlabeled"]).rows.tolist() == list(range(16))
    assert PackedFeed(open_packed(manifest, packed_dir), ["test"]).rows.tolist() == list(range(16, 20))
    with pytest.raises(ValueError, match="pretrain.splits: unknown split"):
        PackedFeed(open_packed(manifest, packed_dir), ["train"])


def test_epochs_are_permutations_and_batches_are_the_rows(packed):
    manifest, packed_dir, img = packed
    feed = PackedFeed(open_packed(manifest, packed_dir), ["unlabeled", "test"], seed=3)
    assert feed.n == 14 and feed.steps_per_epoch(4) == 3
    seen = torch.cat([feed.batch_positions(s, 4) for s in range(3)])
    assert len(set(seen.tolist())) == 12  # without replacement inside an epoch
    nxt = torch.cat([feed.batch_positions(s, 4) for s in range(3, 6)])
    assert not torch.equal(seen, nxt)  # a fresh permutation each epoch
    pos = feed.batch_positions(1, 4)
    got = feed.batch(1, 4)
    assert got.dtype == torch.uint8 and got.shape == (4, 16, 16, 3)
    assert np.array_equal(got.numpy(), img[feed.rows[pos.numpy()]])
    assert set(feed.rows[pos.numpy()]) <= set(range(6, 20))


def test_batches_are_a_function_of_seed_and_step(packed):
    manifest, packed_dir, _ = packed
    a = PackedFeed(open_packed(manifest, packed_dir), seed=1)
    b = PackedFeed(open_packed(manifest, packed_dir), seed=1)
    c = PackedFeed(open_packed(manifest, packed_dir), seed=2)
    # b jumps straight to step 7 (as a resumed run does); a walks there
    for s in range(8):
        pa = a.batch_positions(s, 4)
    assert torch.equal(pa, b.batch_positions(7, 4))
    assert not torch.equal(a.batch_positions(0, 4), c.batch_positions(0, 4))


def test_ranks_split_the_global_batch(packed):
    manifest, packed_dir, _ = packed
    feed = PackedFeed(open_packed(manifest, packed_dir), seed=0)
    whole = feed.batch(2, 8)
    parts = [feed.batch(2, 8, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(whole, torch.cat(parts))
    with pytest.raises(ValueError, match="not divisible"):
        feed.batch(0, 7, rank=0, world_size=2)


def test_small_set_repeats_within_a_batch(packed):
    manifest, packed_dir, _ = packed
    feed = PackedFeed(open_packed(manifest, packed_dir), ["test"], seed=0)
    pos = feed.batch_positions(0, 10)
    assert feed.steps_per_epoch(10) == 1 and pos.numel() == 10
    assert set(pos.tolist()) == {0, 1, 2, 3}
