"""Research on market history: Binance's public data archive -> a Parquet catalog -> streams.

- ``kinds``: what each kind of archive file holds (CSV columns, catalog columns, checks).
- ``archive``: the archive's layout (URLs, file names, CHECKSUM files) and the download plan,
  all pure functions.
- ``convert``: CSV rows -> typed Arrow batches, with every check a bad file can fail (pure:
  bytes in, batches and a report out).
- ``catalog``: the Parquet catalog on disk, its manifests, and the readers a backtest
  streams from (``iter_bars``, ``read_funding``).
- ``writer``: a source file -> checked month parts -> a month file, written atomically.
- ``fetch``: the only network code (a CHECKSUM's text, a zip to a temp file, retries).
- ``ingest``: the imperative shell of download and import: a bounded thread pool, the
  staging of checked files, the manifests, the progress port.
- ``data_cli``: ``aegis data download | list | import``.
- ``localarchive``: the repository's real data laid out as the archive, and a 127.0.0.1
  server for it (tests, benchmarks, trying the command offline).
- ``strategy_api``: the strategy API (callbacks, context, intents), the loader by config and
  the runner the brain and the backtest share; ``strategies``: the built-in ones.
- ``backtest`` / ``backtest_cli``: ``aegis backtest``, a strategy over the catalog through the
  live trader and the paper broker.

docs/data.md and docs/strategies.md are the newcomer's pages.
"""
