"""``continuity dev``: the whole stack on loopback with simulated traffic."""
