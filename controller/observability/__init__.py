"""Logs, metrics and health instruments.  Configured only by the composition root (cli)."""
