"""A vendor whose lock ids look like Acme's: an id both could own is resolved by a scan."""
