"""``python -m streams.cli``: the ``continuity`` command."""

from streams.cli import main

raise SystemExit(main())
