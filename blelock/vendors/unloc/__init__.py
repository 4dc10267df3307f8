"""Unloc: a cloud-only vendor. Its own app opens the locks (the Bluetooth protocol is not
public); blelock gives a phone a key for a lock, for a period and weekly opening hours, and takes
it away again, through the Unloc API v2."""
