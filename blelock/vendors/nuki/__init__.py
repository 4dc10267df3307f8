"""Nuki: its public Bluetooth API and its Web API (keys and keypad PINs)."""
