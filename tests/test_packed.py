"""The one reader of tinyMiniFrance (tmf.data.packed): what it checks, the errors it gives, rows by split, the
fingerprint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pretrain_toy import make_packed

from tmf.data.packed import ARRAY_NAMES, MANIFEST_COLUMNS, open_packed, read_manifest


@pytest.fixture()
def tiny(tmp_path):
    manifest, packed, _ = make_packed(tmp_path / "data", n_per_split=(6, 10, 4), size=16)
    return manifest, packed


def test_opens_memory_maps_and_hands_rows_by_split(tiny):
    manifest, packed = tiny
    p = open_packed(manifest, packed)
    assert all(isinstance(p.arrays[n], np.memmap) for n in ARRAY_NAMES)  # never read whole
    assert p.images.shape == (20, 16, 16, 3) and p.labels.shape == (20, 16, 16) and p.size == 16
    assert list(p.manifest.columns) == MANIFEST_COLUMNS
    assert p.rows(["labeled", "unlabeled"]).tolist() == list(range(16))
    assert p.rows(["test"]).tolist() == list(range(16, 20))
    with pytest.raises(ValueError, match="unknown split"):
        p.rows(["train"])
    # the appearance rules pass the images file rather than its folder
    assert open_packed(manifest, packed / "images.npy").folder == packed


def test_missing_files_are_named(tiny, tmp_path):
    manifest, packed = tiny
    with pytest.raises(FileNotFoundError, match="manifest not found: .*nope.csv"):
        open_packed(tmp_path / "nope.csv", packed)
    for name in ARRAY_NAMES:
        (packed / f"{name}.npy").rename(tmp_path / "aside.npy")
        with pytest.raises(FileNotFoundError, match=f"{name}.npy"):
            open_packed(manifest, packed)
        (tmp_path / "aside.npy").rename(packed / f"{name}.npy")


def test_a_city_that_is_not_one_of_the_16_is_read(tiny, tmp_path):
    """A city folder that is not one of MiniFrance's 16 (tiles.csv: minifrance_city = 0) is its own city."""
    manifest, packed = tiny
    other = tmp_path / "other.csv"
    read_manifest(manifest).assign(city=lambda m: ["Toulon"] + list(m["city"][1:])).to_csv(other, index=False)
    assert open_packed(other, packed).manifest["city"].iloc[0] == "Toulon"


@pytest.mark.parametrize("change, match", [
    (lambda m: m.drop(columns=["has_label", "count_3"]), r"missing column\(s\) \['has_label', 'count_3'\]"),
    (lambda m: m.assign(city=[""] + list(m["city"][1:])), r"row 0 has no city"),
    (lambda m: m.assign(split=["train"] + list(m["split"][1:])), r"unknown split\(s\) \['train'\]"),
    (lambda m: m.iloc[:-1], r"images.npy: 20 sub-tiles but the manifest has 19 rows"),
    (lambda m: m.iloc[:0], "no sub-tile"),
])
def test_bad_manifest_is_refused_naming_the_file(tiny, tmp_path, change, match):
    manifest, packed = tiny
    bad = tmp_path / "bad.csv"
    change(read_manifest(manifest)).to_csv(bad, index=False)
    with pytest.raises(ValueError, match=match) as e:
        open_packed(bad, packed)
    assert "bad.csv" in str(e.value) or "images.npy" in str(e.value)


@pytest.mark.parametrize("name, array, match", [
    ("images", np.zeros((20, 16, 16), np.uint8), r"images.npy: expected uint8 \(N, S, S, 3\)"),
    ("images", np.zeros((20, 16, 16, 3), np.float32), r"images.npy: expected uint8 \(N, S, S, 3\)"),
    ("images", np.zeros((20, 16, 12, 3), np.uint8), r"images.npy: expected uint8 \(N, S, S, 3\)"),
    ("labels", np.zeros((20, 8, 8), np.uint8), r"labels.npy: expected uint8 \(N, S, S\) with S = 16"),
    ("labels", np.zeros((19, 16, 16), np.uint8), r"labels.npy: 19 sub-tiles but the manifest has 20 rows"),
])
def test_bad_array_is_refused_naming_the_file(tiny, name, array, match):
    manifest, packed = tiny
    np.save(packed / f"{name}.npy", array)
    with pytest.raises(ValueError, match=match):
        open_packed(manifest, packed)


def test_unreadable_array_is_a_clear_error(tiny):
    manifest, packed = tiny
    (packed / "labels.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="labels.npy: not a readable .npy array"):
        open_packed(manifest, packed)


def test_rows_out_of_manifest_order_are_found(tiny):
    manifest, packed = tiny
    for name in ARRAY_NAMES:
        np.save(packed / f"{name}.npy", np.load(packed / f"{name}.npy")[::-1])  # the manifest still in the old order
    with pytest.raises(ValueError, match=r"labels.npy: row 0 does not match row 0 \(Nice__t__r0_c0\) of .*manifest.csv"):
        open_packed(manifest, packed)


def test_a_sub_tile_without_label_has_an_empty_label_row(tiny, tmp_path):
    manifest, packed = tiny
    frame = read_manifest(manifest)
    frame.loc[0, "has_label"] = 0  # but row 0 of labels.npy holds labels
    frame.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(ValueError, match="row 0 does not match"):
        open_packed(tmp_path / "m.csv", packed)
    labels = np.load(packed / "labels.npy")
    labels[0] = 0
    np.save(packed / "labels.npy", labels)
    open_packed(tmp_path / "m.csv", packed)  # an unlabeled row: zeros, whatever its counts say


def test_fingerprint_follows_the_content(tiny):
    manifest, packed = tiny
    first = open_packed(manifest, packed).fingerprint(("images",))
    images = np.load(packed / "images.npy")
    np.save(packed / "images.npy", images)  # rewritten, same bytes (a re-run of tmf pack)
    assert open_packed(manifest, packed).fingerprint(("images",)) == first
    images[3, 2, 1, 0] ^= 1
    np.save(packed / "images.npy", images)
    assert open_packed(manifest, packed).fingerprint(("images",)) != first
    images[3, 2, 1, 0] ^= 1
    np.save(packed / "images.npy", images)
    frame = pd.read_csv(manifest)
    frame.loc[0, "split"] = "unlabeled"  # the same sub-tiles, another split
    frame.to_csv(manifest, index=False)
    assert open_packed(manifest, packed).fingerprint(("images",)) != first
