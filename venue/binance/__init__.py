"""Everything Binance USD-M: URLs and paths, signing, request and response bodies, error
codes, rate limits, the user data stream and the WebSocket API."""
