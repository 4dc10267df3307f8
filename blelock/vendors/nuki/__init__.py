"""Nuki Smart Locks: the public Bluetooth API (pairing, lock actions, keypad codes,
authorizations, logs) and, in ``web/``, the Nuki Web API."""
