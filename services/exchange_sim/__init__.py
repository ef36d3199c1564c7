"""AEGIS services."""
