"""regionblock."""
