"""Serving: one unit in this process, or several units as child processes under a supervisor."""
