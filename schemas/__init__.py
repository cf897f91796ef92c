"""Executable form of the public contract (`shared/CONTRACT.md`) and of every event on the log."""
