"""The raw text capture reader (services/feed/raw_capture.py): the receive-time prefix, gzip by
its magic bytes, and the symbol table ``aegis decode`` builds as it reads."""

from __future__ import annotations

import gzip

from services.feed import raw_capture


class TestCaptureReader:
    def test_prefix_is_split_from_the_raw_message(self):
        """'<ns> <raw>' gives (ns, raw); a line starting with '{' gives (None, line)."""
        assert raw_capture.split_line(b'17 {"a":1}') == (17, b'{"a":1}')
        assert raw_capture.split_line(b'{"a": 1}') == (None, b'{"a": 1}')

    def test_gzip_is_detected_by_magic_and_blank_lines_are_skipped(self, tmp_path):
        """A gzip file without .gz in its name is read, CRLF and blank lines are dropped."""
        p = tmp_path / "capture.txt"
        p.write_bytes(gzip.compress(b'1 {"x":1}\r\n\r\n   \n{"y":2}\n'))
        assert list(raw_capture.iter_capture(p)) == [(1, b'{"x":1}'), (None, b'{"y":2}')]

    def test_auto_symbols_register_plausible_names_only(self):
        """The capture symbol table numbers new names in order and refuses blank or spaced ones."""
        t = raw_capture.AutoSymbols()
        assert [t.get("BTCUSDT"), t.get("ETHUSDT"), t.get("BTCUSDT")] == [0, 1, 0]
        assert t.get("") is None and t.get("BTC USDT") is None and t.get("X" * 40) is None
