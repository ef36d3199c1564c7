"""The live dashboard and its control API (docs/operate.md)."""
