"""The local store: one SQLite file holding the encrypted offline-key cache and the log outbox.

``db`` opens and migrates the file and runs queries in its writer thread; ``crypto`` seals
secrets under the data key; ``keys`` and ``outbox`` are what the rest of blelock uses.
Nothing here knows about Bluetooth or HTTP.
"""
