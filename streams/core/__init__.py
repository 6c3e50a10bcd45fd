"""The pure core: the fold, the batch plan and every policy. No I/O, no clock.

Nothing here imports redis, aiokafka, faust, aiohttp or an edge package
(``tests/core/test_import_boundaries.py``)."""
