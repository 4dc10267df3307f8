"""Nokē: the public offline-unlock format, the Core API, and the stand-in command bodies."""
