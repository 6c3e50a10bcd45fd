"""Pydantic models of the wire contract (events) and of the session state."""
