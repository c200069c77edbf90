"""Faults on purpose: a TCP proxy that misbehaves, and the wiring that puts it between units."""
