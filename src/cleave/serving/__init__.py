"""Serving: one unit in this process, or several units as child processes under a supervisor."""

from __future__ import annotations

import gc


def hold_garbage_collection() -> None:
    """Start-up builds some 300,000 objects that live as long as the server: the collector
    scanning them again each time more pile up cost a cold start a few tenths of a second.
    Off until `collect_garbage_again` (or the process ends, for a command that never serves)."""
    gc.disable()


def collect_garbage_again() -> None:
    """Once start-up is done: what it built is frozen, never scanned again (the few cycles it
    left as garbage, some 10,000 objects, are kept), and the collector runs for the rest."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
