"""The parsed-capture cache: identical to parsing, and never a failure when broken."""

from __future__ import annotations

import dataclasses

import numpy as np

from services.exchange_sim import recorded_market


def same(a: recorded_market.Capture, b: recorded_market.Capture) -> bool:
    for f in dataclasses.fields(recorded_market.Capture):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def test_cached_capture_equals_parsed_capture(tmp_path, monkeypatch):
    """A load from the cache gives exactly the arrays and scalars a fresh parse gives."""
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    first = recorded_market.load()
    assert len(list(tmp_path.glob("capture-*.npz"))) == 1
    assert same(recorded_market.load(), first)
    assert same(first, recorded_market.load(use_cache=False))


def test_corrupt_cache_falls_back_to_parsing(tmp_path, monkeypatch):
    """A damaged cache file is ignored and replaced; the load still succeeds."""
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(tmp_path))
    recorded_market.load()
    (cf,) = tmp_path.glob("capture-*.npz")
    cf.write_bytes(b"not an npz")
    cap = recorded_market.load()
    assert cap.n_trades == 21_313 and cap.n_books == 66_089


def test_unwritable_cache_dir_still_loads(tmp_path, monkeypatch):
    """When the cache cannot be written (a file where the directory should be), loading still works."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("AEGIS_CACHE_DIR", str(blocker / "sub"))
    assert recorded_market.load().symbol == "BTCUSDT"
