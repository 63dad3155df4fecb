"""The routing core: pure functions over the config and plain values.

Identities and their normalization, classification by rules, business hours
and customer-facing templates. Nothing here does I/O or reads the clock: time
is always a parameter.
"""
