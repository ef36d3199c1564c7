"""The exchange as a library, not a service: the broker port, exchange orders, fills and
positions, symbol filters, and everything Binance (URLs, signing, bodies, error codes, rate
limits, the user data stream, the WebSocket API). Feed, brain and orchestrator import it;
it imports nothing from ``services``."""
