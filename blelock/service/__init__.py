"""The kiosk service: `blelock serve` (runner, local HTTP API, process lifecycle)."""
