"""Point a ccxt ``binanceusdm`` client at the sim instead of fapi.binance.com.

``ccxt_urls_for`` is pure: ccxt's ``urls['api']`` table rewritten so every USD-M REST base
(``https://fapi.binance.com/fapi/v1``, ``/fapi/v2``, ``/fapi/v3``, ``/futures/data``) becomes
the same path on the sim, and every other base (spot, sapi, dapi, eapi, papi) a sim path
that answers 404, so a call the sim does not serve fails loudly instead of going to the
internet.

``point_ccxt_at`` is the one helper here that mutates: it installs those URLs on a live
client and sets the options the sim needs:

- ``fetchMarkets: {"types": ["linear"]}`` and ``fetchCurrencies: False``: ``load_markets``
  then reads ``/fapi/v1/exchangeInfo`` only (no spot, no sapi currency list);
- ``adjustForTimeDifference`` (``sync_time=True``): ``load_markets`` reads
  ``/fapi/v1/time`` and ccxt signs with the sim's clock, which is not the wall clock in
  tests (a clock skew injected later still shows, as on the real exchange);
- ccxt picks its USD-M error table by the URL's host (``https://fapi.binance.com/``),
  which a loopback URL does not match: the linear table is merged into the generic one so
  that e.g. -2019 still raises ``InsufficientFunds`` and -2013 ``OrderNotFound``.
"""

from __future__ import annotations

from typing import Any, Mapping

FAPI_HOST = "https://fapi.binance.com"
UNSUPPORTED_PREFIX = "/_unsupported/"  # the sim has no such route: 404


def ccxt_urls_for(api_urls: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """ccxt's ``urls['api']`` with the USD-M bases on ``base_url`` (e.g. ``http://127.0.0.1:8765``)."""
    base = base_url.rstrip("/")
    out: dict[str, Any] = {}
    for name, url in api_urls.items():
        if isinstance(url, str) and url.startswith(FAPI_HOST + "/"):
            out[name] = base + url[len(FAPI_HOST):]
        else:
            out[name] = base + UNSUPPORTED_PREFIX + name
    return out


def point_ccxt_at(exchange: Any, base_url: str, sync_time: bool = True) -> None:
    """Make a ccxt ``binanceusdm`` (sync or async) trade against the sim at ``base_url``.
    Mutates ``exchange``: its ``urls['api']``, a few ``options`` and its error table."""
    exchange.urls["api"] = ccxt_urls_for(exchange.urls["api"], base_url)
    exchange.options["fetchMarkets"] = {"types": ["linear"]}
    exchange.options["fetchCurrencies"] = False
    exchange.options["defaultType"] = "swap"
    exchange.options["adjustForTimeDifference"] = sync_time
    linear = exchange.exceptions.get("linear", {})
    for kind in ("exact", "broad"):
        merged = dict(exchange.exceptions.get(kind, {}))
        merged.update(linear.get(kind, {}))
        exchange.exceptions[kind] = merged
