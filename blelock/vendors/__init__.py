"""Vendor plugins, one package each (see blelock.registry and blelock.vendors.base)."""
