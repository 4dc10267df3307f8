"""Nuki's crypto, as the Smart Lock API specifies it: X25519 key pairs, the shared key
``crypto_box_beforenm(their_pk, my_sk)`` (HSalsa20 over the X25519 secret with a zero input),
HMAC-SHA256 authenticators keyed with it, and secretbox nonces that never repeat."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.bindings import crypto_box_beforenm, crypto_scalarmult_base

from blelock.vendors.nuki.protocol._frames import NONCE_SIZE

__all__ = ["KeyPair", "Nonces", "authenticator", "generate_keypair", "shared_key"]

Random = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: bytes
    secret: bytes = field(repr=False)


def generate_keypair(random: Random = os.urandom) -> KeyPair:
    secret = random(32)
    return KeyPair(crypto_scalarmult_base(secret), secret)


def keypair_from_secret(secret: bytes) -> KeyPair:
    return KeyPair(crypto_scalarmult_base(secret), secret)


def shared_key(their_public: bytes, my_secret: bytes) -> bytes:
    if len(their_public) != 32:
        raise ValueError("an X25519 public key is 32 bytes")
    return bytes(crypto_box_beforenm(their_public, my_secret))


def authenticator(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over the parts, keyed with the shared key (the pairing's authenticators)."""
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def authentic(key: bytes, given: bytes, *parts: bytes) -> bool:
    return hmac.compare_digest(authenticator(key, *parts), given)


class Nonces:
    """Fresh secretbox nonces for one key: 192 random bits each, and one this ledger has
    already handed out is never handed out again (nor one it saw from the other side)."""

    def __init__(self, random: Random = os.urandom) -> None:
        self._random = random
        self._used: set[bytes] = set()

    def fresh(self) -> bytes:
        for _ in range(8):  # a repeat is astronomically rare with os.urandom
            nonce = self._random(NONCE_SIZE)
            if nonce not in self._used:
                self._used.add(nonce)
                return nonce
        raise ValueError("the random source keeps repeating nonces")

    def seen(self, nonce: bytes) -> bool:
        """Record a nonce the other side used; True when it was used before (a replay)."""
        if nonce in self._used:
            return True
        self._used.add(nonce)
        return False
