"""Helpers shared by the tests (``conftest.py`` holds fixtures only)."""
