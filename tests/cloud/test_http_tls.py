"""TLS for real clouds stays verified while the per-client cost of building it is paid once."""

from __future__ import annotations

import ssl

from blelock.cloud import _http


def test_https_clients_share_one_verifying_context() -> None:
    context = _http._tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert _http._tls_context() is context
