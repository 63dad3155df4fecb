"""omnirouter: the routing core (envelope, bus, store, routing, timers, daemon)."""

__version__ = "0.1.0.dev0"
