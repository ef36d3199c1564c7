"""The ccxt broker is built on first use, off the brain's way to ready (brokers.LazyBroker)."""

from __future__ import annotations

from venue import brokers


def test_lazy_broker_builds_once_on_first_use_and_closes_only_what_it_built():
    import threading

    built = []

    class Fake:
        name = "ccxt"

        def __init__(self):
            built.append(self)
            self.closed = False

        def balance(self):
            return 42

        def close(self):
            self.closed = True

    lazy = brokers.LazyBroker(Fake, name="ccxt")
    lazy.close()  # never used: nothing to build, nothing to close
    assert lazy.name == "ccxt" and not lazy.built and built == []
    threads = [threading.Thread(target=lazy.balance) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and lazy.balance() == 42
    lazy.close()
    assert built[0].closed
