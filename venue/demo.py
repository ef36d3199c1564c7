"""The local exchange's published demo credentials.

``exchange_sim`` accepts signed requests made with this pair when no ``BINANCE_API_KEY`` /
``BINANCE_API_SECRET`` is set, and the demo's broker signs with it. They are NOT secrets:
they open nothing but a simulated account on 127.0.0.1, and publishing them here is what lets
the demo run with no set-up at all.
"""

from __future__ import annotations

DEMO_API_KEY = "aegis-demo-key"
DEMO_API_SECRET = "aegis-demo-secret"
