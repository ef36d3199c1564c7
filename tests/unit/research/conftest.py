"""Fixtures of the research tests: the repository's real data laid out as Binance's archive,
served on 127.0.0.1 by a server that every test stops in teardown (no internet, ever)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from research.localarchive import agg_trade_rows, build_archive, kline_rows, serving

KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")
AGG_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"

# services/exchange_sim/data/BTCUSDT_1m_2024-12.csv, as archive rows (README there: 41,761
# bars, 2024-11-30 23:00 .. 2024-12-29 23:00 UTC, no gaps)
FIRST_OPEN_MS = 1733007600000  # 2024-11-30 23:00 UTC
DEC_FIRST_OPEN_MS = 1733011200000  # 2024-12-01 00:00 UTC
LAST_OPEN_MS = 1735513200000  # 2024-12-29 23:00 UTC


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Every HTTP request of these tests goes to 127.0.0.1: anything else fails the test."""
    import urllib.parse

    import research.fetch as fetch

    real_open = fetch._open

    def guarded(url, cfg):
        host = urllib.parse.urlsplit(url).hostname
        assert host == "127.0.0.1", f"a test tried to reach {url}"
        return real_open(url, cfg)

    monkeypatch.setattr(fetch, "_open", guarded)


@pytest.fixture(scope="session")
def klines() -> list[tuple[int, str]]:
    """(open ms, archive CSV line) of the 41,761 real BTCUSDT 1m candles."""
    return kline_rows()


@pytest.fixture(scope="session")
def trades() -> list[tuple[int, str]]:
    """(time ms, archive aggTrades line) of the 21,313 real USD-M BTCUSDT trades of 2024-08-08."""
    return agg_trade_rows()


@pytest.fixture(scope="session")
def archive_root(tmp_path_factory) -> Path:
    """The local archive (research.localarchive), built once; tests must not change it."""
    return build_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture(scope="session")
def catalog(archive_root, tmp_path_factory) -> Path:
    """The repository's real BTCUSDT 1m bars (2024-11-30 23:00 .. 2024-12-29 23:00) as a catalog,
    imported once from the shared archive; tests read it, never write it."""
    from research.ingest import run_import

    cat = tmp_path_factory.mktemp("cat")
    for z in sorted(archive_root.rglob("monthly/klines/BTCUSDT/1m/*.zip")):
        assert run_import(catalog=cat, path=z).ok
    return cat


@pytest.fixture
def own_archive(archive_root, tmp_path) -> Path:
    """A private copy of the archive that a test may damage."""
    return Path(shutil.copytree(archive_root, tmp_path / "archive"))


@pytest.fixture
def server(archive_root):
    """The shared archive served on 127.0.0.1; shut down at teardown."""
    with serving(archive_root) as srv:
        yield srv


@pytest.fixture
def own_server(own_archive):
    """The private archive copy served on 127.0.0.1; shut down at teardown."""
    with serving(own_archive) as srv:
        yield srv


def write_zip(path: Path, text: str, member: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member or path.name[:-4] + ".csv", text)
    return path


def csv_text(lines: list[str], header: str | None = KLINE_HEADER) -> str:
    return ((header + "\n") if header else "") + "\n".join(lines) + "\n"
