"""Wiring of a run: build source, localizer and endpoints from a config; the process bodies of
source and worker; the supervisor of a live run; offline analysis of recorded movies.

The CLI (``live_decode.cli``) and the public API (``live_decode``) are thin shells over this room.
"""
