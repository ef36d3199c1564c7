"""Shared contracts of AEGIS: config, logging, errors, wire protocol, ZeroMQ helpers, the ring."""
