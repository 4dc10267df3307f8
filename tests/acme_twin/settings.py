"""No settings of its own."""

SETTINGS = None
