"""The key the simulated bootloaders trust: the public half of the test key that
``scripts/make_firmware_images.py`` signs ``firmware_images/`` with (a test checks they match).
A test key for simulated locks only: never trusted by anything real."""

from __future__ import annotations

TEST_SIGNING_PUBLIC_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEqmLgf29nazkUIB4V0Sim745kD/6
5xzzQ78T5wD8gn1K+wEnazUehguiffBAePZDfo1sCQ67ZlxFx/6ORx7Bpw==
-----END PUBLIC KEY-----
"""
