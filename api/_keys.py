"""API keys: creation, revocation, listing, and login signatures.

A key is a public `key_id` and a `secret` shown once at creation. Neither
the secret nor anything that reveals it is stored:

    signing_key = HMAC-SHA256(key=secret, msg="bulkex-signing-key-v1:" + key_id)   (32 bytes)
    stored      = signing_key XOR HMAC-SHA256(key=pepper, msg="bulkex-seal-v1:" + key_id)

The client derives the same signing key from its secret and signs each login
with it: ``HMAC-SHA256(signing_key, f"{key_id}\\n{timestamp_ms}\\n{nonce}")``.
Why this scheme: HMAC verification needs the server to hold a key that can
produce signatures, so a one-way password hash (bcrypt, scrypt) cannot be
used. Storing a derived key instead of the secret means the secret itself is
never on disk (a user who reused it elsewhere is not exposed), and sealing it
with a pepper from the environment (``BULKEX_API_KEY_PEPPER``, never in the
database) means a copy of the database alone cannot sign a login. Without a
pepper the seal is keyed with the empty string and protects nothing: whoever
reads the api_keys table (a backup, a replica, a leaked dump) holds the
signing key of every key and can log in as anyone, staff included. So
``bulkex serve`` refuses to start without a pepper of at least
MIN_PEPPER_CHARS characters (``pepper_problem``) unless told
``--insecure-no-pepper`` or run as the demo (``--demo``). Changing the pepper
invalidates every key: create keys with the pepper the server runs with.

Roles: ``trader`` (subject: the member account it acts for), ``operator``
(subject: its operator account in the warehouse core, which acts for one
warehouse), ``bank`` (subject: the bank), ``staff`` (subject: the person who
holds the key, a user name of 1 to MAX_STAFF_SUBJECT_CHARS letters, digits and
``.``, ``_``, ``@``, ``-``). ``bulkex keys create staff`` requires the name:
maker-checker must compare people, and one person may hold several staff
keys (``ApiKey.actor`` is the identity to record and compare). A staff key
made without a name by code (the test harness) acts as its own key id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import BigInteger, Column, Engine, MetaData, String, Table, insert, select, update

from exchange import make_engine, upgrade

__all__ = [
    "MAX_STAFF_SUBJECT_CHARS",
    "MIN_PEPPER_CHARS",
    "PEPPER_ENV",
    "ROLES",
    "STAFF_PREFIX",
    "ApiKey",
    "KeyStore",
    "Role",
    "create_key",
    "derive_signing_key",
    "list_keys",
    "pepper_problem",
    "revoke_key",
    "sign_login",
]

Role = Literal["trader", "operator", "bank", "staff"]
ROLES: tuple[Role, ...] = ("trader", "operator", "bank", "staff")
PEPPER_ENV = "BULKEX_API_KEY_PEPPER"
MIN_PEPPER_CHARS = 16
"""The shortest pepper ``bulkex serve`` accepts (a random 32-byte token is 43 characters)."""
MAX_SUBJECT_CHARS = 64
MAX_STAFF_SUBJECT_CHARS = 48
"""A staff key's person: recorded in the core as ``staff:<name>``, within clearing's 64-character ids."""
MAX_LABEL_CHARS = 200
STAFF_PREFIX = "staff:"
_STAFF_NAME = re.compile(r"[A-Za-z0-9._@-]+")

_metadata = MetaData()
api_keys = Table(
    "api_keys",
    _metadata,
    Column("key_id", String(40), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("label", String(200), nullable=False),
    Column("sealed_signing_key", String(64), nullable=False),
    Column("created_ts_ns", BigInteger, nullable=False),
    Column("revoked_ts_ns", BigInteger, nullable=True),
)


def derive_signing_key(key_id: str, secret: str) -> bytes:
    """The 32-byte signing key of a secret (what both client and server sign with)."""
    return hmac.new(secret.encode(), b"bulkex-signing-key-v1:" + key_id.encode(), hashlib.sha256).digest()


def sign_login(key_id: str, signing_key: bytes, timestamp_ms: int, nonce: str) -> str:
    """The lowercase hex signature of a login."""
    message = f"{key_id}\n{timestamp_ms}\n{nonce}".encode()
    return hmac.new(signing_key, message, hashlib.sha256).hexdigest()


def _seal_pad(key_id: str, pepper: str) -> bytes:
    return hmac.new(pepper.encode(), b"bulkex-seal-v1:" + key_id.encode(), hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    assert len(a) == len(b), (len(a), len(b))
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _pepper(pepper: str | None) -> str:
    return os.environ.get(PEPPER_ENV, "") if pepper is None else pepper


def pepper_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the pepper in the environment does not protect the stored keys (None: it does)."""
    pepper = (os.environ if environ is None else environ).get(PEPPER_ENV, "")
    if not pepper:
        return f"{PEPPER_ENV} is not set"
    if len(pepper) < MIN_PEPPER_CHARS:
        return f"{PEPPER_ENV} has {len(pepper)} characters, fewer than {MIN_PEPPER_CHARS}"
    return None


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    role: Role
    subject: str
    label: str
    created_ts_ns: int
    revoked_ts_ns: int | None
    signing_key: bytes  # unsealed; b"" in listings

    @property
    def revoked(self) -> bool:
        return self.revoked_ts_ns is not None

    @property
    def actor(self) -> str:
        """Who acts with this key, as the core should record it for maker-checker: a staff key's
        person (``staff:<name>``: two keys of one person are one approver), else the key id."""
        if self.role == "staff" and self.subject:
            return STAFF_PREFIX + self.subject
        return self.key_id


def _check(role: str, subject: str, label: str, *, staff_name_required: bool = False) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "staff":
        named = 1 <= len(subject) <= MAX_STAFF_SUBJECT_CHARS and _STAFF_NAME.fullmatch(subject) is not None
        if (subject or staff_name_required) and not named:
            raise ValueError(
                "a staff key names the person who holds it (maker-checker compares people, not keys): "
                f"1 to {MAX_STAFF_SUBJECT_CHARS} letters, digits, '.', '_', '@' or '-', e.g. "
                "`bulkex keys create staff li.wei`"
            )
    elif not (1 <= len(subject) <= MAX_SUBJECT_CHARS) or not subject.isprintable() or " " in subject:
        raise ValueError(f"a {role} key needs a subject of 1 to {MAX_SUBJECT_CHARS} printable characters, no spaces")
    if len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"the label must be at most {MAX_LABEL_CHARS} characters")


class KeyStore:
    """The api_keys table (on its own engine; the gateway reads it off the event loop)."""

    def __init__(self, database_url: str, pepper: str | None = None, *, migrate: bool = False) -> None:
        if migrate:
            upgrade(database_url)
        self.engine: Engine = make_engine(database_url)
        self.pepper = _pepper(pepper)

    def close(self) -> None:
        self.engine.dispose()

    def create(
        self,
        role: str,
        subject: str = "",
        label: str = "",
        now_ns: int | None = None,
        *,
        staff_name_required: bool = False,
    ) -> tuple[str, str]:
        """A new key; returns (key_id, secret). The secret is not kept: show it once. A staff key's
        subject is the person's name (required with `staff_name_required`, as ``create_key`` does)."""
        _check(role, subject, label, staff_name_required=staff_name_required)
        key_id = "k" + secrets.token_hex(12)
        secret = secrets.token_urlsafe(32)
        sealed = _xor(derive_signing_key(key_id, secret), _seal_pad(key_id, self.pepper)).hex()
        with self.engine.begin() as conn:
            conn.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    role=role,
                    subject=subject,
                    label=label,
                    sealed_signing_key=sealed,
                    created_ts_ns=time.time_ns() if now_ns is None else now_ns,
                    revoked_ts_ns=None,
                )
            )
        return key_id, secret

    def revoke(self, key_id: str, now_ns: int | None = None) -> bool:
        """Revoke a key; False when there is no such live key."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_ts_ns.is_(None))
                .values(revoked_ts_ns=time.time_ns() if now_ns is None else now_ns)
            )
        return bool(result.rowcount)

    def get(self, key_id: str) -> ApiKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            return None
        signing_key = _xor(bytes.fromhex(row.sealed_signing_key), _seal_pad(row.key_id, self.pepper))
        return ApiKey(row.key_id, row.role, row.subject, row.label, row.created_ts_ns, row.revoked_ts_ns, signing_key)

    def all(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_ts_ns, api_keys.c.key_id)).all()
        return [ApiKey(r.key_id, r.role, r.subject, r.label, r.created_ts_ns, r.revoked_ts_ns, b"") for r in rows]

    def revoked_ids(self, key_ids: list[str]) -> set[str]:
        """Which of `key_ids` are revoked (or gone)."""
        if not key_ids:
            return set()
        with self.engine.connect() as conn:
            live = conn.execute(
                select(api_keys.c.key_id).where(api_keys.c.key_id.in_(key_ids), api_keys.c.revoked_ts_ns.is_(None))
            ).all()
        return set(key_ids) - {r.key_id for r in live}


def create_key(database_url: str, role: str, subject: str = "", label: str = "") -> tuple[str, str]:
    """`bulkex keys create`: a new key (schema brought up to date first); returns (key_id, secret).
    A staff key must name its person."""
    _check(role, subject, label, staff_name_required=True)  # before touching the database
    store = KeyStore(database_url, migrate=True)
    try:
        return store.create(role, subject, label, staff_name_required=True)
    finally:
        store.close()


def revoke_key(database_url: str, key_id: str) -> bool:
    """`bulkex keys revoke`: False when there is no such live key."""
    store = KeyStore(database_url, migrate=True)
    try:
        return store.revoke(key_id)
    finally:
        store.close()


def list_keys(database_url: str) -> list[ApiKey]:
    """`bulkex keys list` (no secrets, no signing keys)."""
    store = KeyStore(database_url, migrate=True)
    try:
        return store.all()
    finally:
        store.close()
