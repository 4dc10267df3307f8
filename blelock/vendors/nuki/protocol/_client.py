"""The client's side of a Nuki conversation, sans-I/O: pairing on the pairing characteristic
(Smart Lock 1-4, and the Ultra with its security PIN) and challenge-response commands on the
user-specific characteristic. Both are :class:`~blelock.protocol.exchange.Exchange` s: the
driver writes what ``next_action`` says and feeds every notification to ``receive``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from blelock.errors import RemoteProtocolError
from blelock.protocol.exchange import Action, AwaitNotification, Write
from blelock.vendors.nuki.protocol._crypto import (
    KeyPair,
    Nonces,
    Random,
    authentic,
    authenticator,
    shared_key,
)
from blelock.vendors.nuki.protocol._frames import (
    ADATA_SIZE,
    Command,
    ErrorCode,
    Message,
    Reassembler,
    Status,
    decode_plain,
    encode_plain,
    fragment,
    open_sealed,
    seal,
)
from blelock.vendors.nuki.protocol._values import encode_name

__all__ = [
    "Answer",
    "CommandExchange",
    "Credentials",
    "Paired",
    "PairingExchange",
    "Refused",
    "Request",
    "encode_pin",
]

ULTRA_PAIRING_AUTH_ID = 0x7FFFFFFF
"""The auth id an Ultra's encrypted AUTHORIZATION_DATA carries before it has one."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What pairing gave: enough to talk to the lock as this authorization."""

    auth_id: int
    key: bytes = field(repr=False)
    app_id: int
    ultra: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """The lock answered ERROR_REPORT."""

    code: int
    command: int

    def reason(self) -> str:
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return f"error 0x{self.code:02x}"


@dataclass(frozen=True, slots=True)
class Answer:
    message: Message


@dataclass(frozen=True, slots=True)
class Paired:
    credentials: Credentials
    lock_public_key: bytes
    lock_uuid: bytes


def encode_pin(pin: int, *, ultra: bool) -> bytes:
    """The security PIN as it is appended: u16 on Smart Lock 1-4, u32 on the Ultra."""
    if ultra:
        if not 0 <= pin <= 999_999:
            raise ValueError("an Ultra's security PIN is 6 digits")
        return struct.pack("<I", pin)
    if not 0 <= pin <= 0xFFFF:
        raise ValueError("a security PIN is 4 digits on Smart Lock 1-4")
    return struct.pack("<H", pin)


def _error(message: Message) -> Refused:
    if len(message.payload) < 3:
        raise RemoteProtocolError("an ERROR_REPORT is shorter than 3 bytes")
    code = message.payload[0]
    (command,) = struct.unpack_from("<H", message.payload, 1)
    return Refused(code, command)


class PairingExchange:
    """Pair with a lock in pairing mode. Smart Lock 1-4: public keys, the authenticator over
    both keys and the lock's challenge, the authorization data, and the confirmation of the id
    the lock gave. Ultra: after the authenticator the lock sends AUTHORIZATION_INFO and the
    client sends its authorization data encrypted, with the security PIN."""

    def __init__(
        self,
        characteristic: str,
        keypair: KeyPair,
        *,
        app_id: int,
        name: str,
        id_type: int = 0,
        ultra: bool = False,
        security_pin: int | None = None,
        random: Random = os.urandom,
        chunk: int | None = None,
    ) -> None:
        if ultra and security_pin is None:
            raise ValueError("pairing a Smart Lock Ultra needs its 6-digit security PIN")
        self._char = characteristic
        self._keys = keypair
        self._app_id = app_id
        self._name = encode_name(name, 32)  # too long: refused, not cut mid-character
        self._id_type = id_type
        self._ultra = ultra
        self._pin = security_pin
        self._random = random
        self._nonces = Nonces(random)
        self._frames = Reassembler(encrypted=False)
        self._step = "request"
        self._lock_pk = b""
        self._key = b""
        self._client_nonce = b""
        self._auth_id = 0
        self._uuid = b""
        self._chunk = chunk
        self._pending: list[Write] = []
        self._queue(encode_plain(Command.REQUEST_DATA, struct.pack("<H", Command.PUBLIC_KEY)))
        self.result: Paired | None = None
        self.refused: Refused | None = None

    def _queue(self, frame: bytes) -> None:
        self._pending = _writes(self._char, frame, self._chunk)

    def next_action(self) -> Action | None:
        if self.result is not None or self.refused is not None:
            return None
        if self._pending:
            return self._pending.pop(0)
        return AwaitNotification()

    def receive(self, notification: bytes) -> Sequence[Answer | Refused | Paired]:
        frames = self._frames.feed(notification)
        events: list[Answer | Refused | Paired] = []
        for frame in frames:
            events += self._take(frame)
        return events

    def _take(self, frame: bytes) -> list[Answer | Refused | Paired]:
        if self._frames.encrypted and len(frame) >= ADATA_SIZE:
            message = open_sealed(self._key, frame).message
        else:
            message = decode_plain(frame)
        if message.command == Command.ERROR_REPORT:
            self.refused = _error(message)
            return [self.refused]
        step = self._step
        if step == "request":
            self._lock_pk = self._expect(message, Command.PUBLIC_KEY, 32)
            self._key = shared_key(self._lock_pk, self._keys.secret)
            self._send(Command.PUBLIC_KEY, self._keys.public, "public key")
        elif step == "public key":
            nonce = self._expect(message, Command.CHALLENGE, 32)
            mac = authenticator(self._key, self._keys.public, self._lock_pk, nonce)
            self._send(Command.AUTHORIZATION_AUTHENTICATOR, mac, "authenticator")
        elif step == "authenticator" and self._ultra:
            self._expect(message, Command.AUTHORIZATION_INFO, None)
            assert self._pin is not None
            payload = (
                struct.pack("<I", self._app_id) + self._name + encode_pin(self._pin, ultra=True)
            )
            data = seal(
                self._key,
                ULTRA_PAIRING_AUTH_ID,
                Command.AUTHORIZATION_DATA,
                payload,
                self._nonces.fresh(),
            )
            self._frames = Reassembler(encrypted=True)
            self._queue(data)
            self._step = "ultra data"
        elif step == "authenticator":
            nonce = self._expect(message, Command.CHALLENGE, 32)
            mine = self._random(32)
            r = bytes([self._id_type]) + struct.pack("<I", self._app_id) + self._name + mine
            self._client_nonce = mine
            self._send(Command.AUTHORIZATION_DATA, authenticator(self._key, r, nonce) + r, "data")
        elif step == "data":
            body = self._expect(message, Command.AUTHORIZATION_ID, 84)
            mac, rest = body[:32], body[32:]
            if not authentic(self._key, mac, rest, self._client_nonce):
                raise RemoteProtocolError("the lock's AUTHORIZATION_ID did not authenticate")
            auth_id_raw, uuid, lock_nonce = rest[:4], rest[4:20], rest[20:52]
            self._auth_id = struct.unpack("<I", auth_id_raw)[0]
            self._uuid = uuid
            confirm = authenticator(self._key, auth_id_raw, lock_nonce) + auth_id_raw
            self._send(Command.AUTHORIZATION_ID_CONFIRMATION, confirm, "confirmation")
        elif step == "confirmation":
            status = self._expect(message, Command.STATUS, 1)
            if status[0] != Status.COMPLETE:
                raise RemoteProtocolError(f"pairing ended with status {status[0]}")
            return [self._done(self._auth_id, self._uuid)]
        elif step == "ultra data":
            body = self._expect(message, Command.AUTHORIZATION_ID, None)
            if len(body) < 20:
                raise RemoteProtocolError("an Ultra's AUTHORIZATION_ID is shorter than 20 bytes")
            return [self._done(struct.unpack_from("<I", body)[0], body[4:20])]
        return [Answer(message)]

    def _done(self, auth_id: int, uuid: bytes) -> Paired:
        credentials = Credentials(auth_id, self._key, self._app_id, self._ultra)
        self.result = Paired(credentials, self._lock_pk, uuid)
        return self.result

    def _send(self, command: Command, payload: bytes, step: str) -> None:
        self._queue(encode_plain(command, payload))
        self._step = step

    @staticmethod
    def _expect(message: Message, command: Command, size: int | None) -> bytes:
        if message.command != command:
            raise RemoteProtocolError(f"pairing expected {command.name}, got {message.name()}")
        if size is not None and len(message.payload) != size:
            raise RemoteProtocolError(
                f"{command.name} carries {len(message.payload)} bytes, not {size}"
            )
        return message.payload


@dataclass(frozen=True, slots=True)
class Request:
    """One command: built with the lock's fresh challenge when ``challenge`` (the payload
    builder gets it), and answered when ``done`` says a message ends it."""

    command: Command
    payload: Callable[[bytes], bytes]
    challenge: bool = True
    done: Callable[[Message], bool] = lambda message: (
        message.command == Command.STATUS and (message.payload[:1] == bytes([Status.COMPLETE]))
    )


def request_data(command: Command) -> Request:
    """REQUEST_DATA for ``command`` (keyturner states, battery report): no challenge."""
    return Request(
        Command.REQUEST_DATA,
        lambda _: struct.pack("<H", command),
        challenge=False,
        done=lambda message: message.command == command,
    )


class CommandExchange:
    """Requests, in order, on the user-specific characteristic, each under a fresh nonce;
    every decrypted message is an :class:`Answer` (a CHALLENGE is consumed), an
    ERROR_REPORT a :class:`Refused` that ends the exchange."""

    def __init__(
        self,
        characteristic: str,
        credentials: Credentials,
        requests: Sequence[Request],
        *,
        random: Random = os.urandom,
        chunk: int | None = None,
    ) -> None:
        self._char = characteristic
        self._chunk = chunk
        self._creds = credentials
        self._requests = list(requests)
        self._nonces = Nonces(random)
        self._frames = Reassembler(encrypted=True)
        self._current: Request | None = None
        self._pending: list[Write] = []
        self.refused: Refused | None = None
        self._advance()

    def _seal(self, command: int, payload: bytes) -> list[Write]:
        creds = self._creds
        frame = seal(creds.key, creds.auth_id, command, payload, self._nonces.fresh())
        return _writes(self._char, frame, self._chunk)

    def _advance(self) -> None:
        if not self._requests:
            self._current = None
            return
        self._current = request = self._requests.pop(0)
        if request.challenge:
            self._pending = self._seal(Command.REQUEST_DATA, struct.pack("<H", Command.CHALLENGE))
            self._awaiting_challenge = True
        else:
            self._pending = self._seal(request.command, request.payload(b""))
            self._awaiting_challenge = False

    @property
    def done(self) -> bool:
        return self._current is None or self.refused is not None

    def next_action(self) -> Action | None:
        if self.done:
            return None
        if self._pending:
            return self._pending.pop(0)
        return AwaitNotification()

    def receive(self, notification: bytes) -> Sequence[Answer | Refused]:
        events: list[Answer | Refused] = []
        for frame in self._frames.feed(notification):
            if len(frame) < ADATA_SIZE:  # an unencrypted ERROR_REPORT: the lock has no key for us
                message = decode_plain(frame)
            else:
                sealed = open_sealed(self._creds.key, frame)
                if sealed.auth_id != self._creds.auth_id:
                    raise RemoteProtocolError("the lock answered for another authorization")
                if self._nonces.seen(sealed.nonce):
                    raise RemoteProtocolError("the lock reused a nonce")
                message = sealed.message
            events += self._take(message)
        return events

    def _take(self, message: Message) -> list[Answer | Refused]:
        if message.command == Command.ERROR_REPORT:
            self.refused = _error(message)
            return [self.refused]
        request = self._current
        if request is None:
            return [Answer(message)]
        if self._awaiting_challenge:
            if message.command != Command.CHALLENGE or len(message.payload) != 32:
                raise RemoteProtocolError(f"expected a CHALLENGE, got {message.name()}")
            self._awaiting_challenge = False
            self._pending = self._seal(request.command, request.payload(message.payload))
            return []
        if request.done(message):
            self._advance()
        return [Answer(message)]


def _writes(characteristic: str, frame: bytes, chunk: int | None) -> list[Write]:
    """A frame as the writes that carry it (``chunk`` bytes each; None: one write), with
    response, the last one waiting for the answer."""
    parts = [frame] if chunk is None else fragment(frame, chunk)
    return [
        Write(characteristic, part, response=True, expects_notification=i == len(parts) - 1)
        for i, part in enumerate(parts)
    ]
