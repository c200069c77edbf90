"""Cleave: the chassis. Technical building blocks, no shop words."""
