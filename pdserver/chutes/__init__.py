"""Chutes: the paradrop.yaml format, its validation, and the installed-chute store."""
