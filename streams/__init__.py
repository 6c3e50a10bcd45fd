"""Continuity stream processing: the pure fold and policies, and the thin I/O edges around them."""
