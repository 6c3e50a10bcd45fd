"""Redis: the key layout, the Lua scripts and the thin adapters that run them."""
