"""Operator jobs: rebuild, erasure, time travel, unmerge and dead-letter repair."""
