"""invscale inside other tools (optional imports)."""
