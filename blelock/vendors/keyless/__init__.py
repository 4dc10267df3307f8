"""ASSA ABLOY Keyless: the Administration API v2, and the BLE stand-in
(docs/keyless-ble-standin.md)."""
