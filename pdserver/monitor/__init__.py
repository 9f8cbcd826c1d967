"""Monitoring: what the node and its chutes look like right now."""
