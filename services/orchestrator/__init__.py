"""Orchestrator: database and ring owner, journal writer, supervisor (``aegis run``)."""
