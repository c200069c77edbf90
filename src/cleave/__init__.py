"""Cleave: the chassis. Technical building blocks that know no service of the system they run."""
