"""Alation I/O: delivery, the REST API (discovery, tokens), the Test button's probe."""
