"""The edge's certificate store: `certs/NAME.pem` + `NAME.key` (+ `NAME.json`), chosen by SNI.

* exact name beats wildcard (`*.zone` covers one label); among equals the later expiry wins;
* an SNI name no certificate covers gets the certificate of its zone's apex (the
  edge's own name; a client then reports the name mismatch), or of the first zone
  for a name outside every zone; with neither, the handshake is refused. Never a
  certificate for another exact name, so one tenant's name never shows another's;
* no SNI (a connection by IP): the certificate covering an IP, else the first one;
* `refresh()` re-reads the directory when it changed; new handshakes use the new
  certificates, connections already open keep theirs (hot swap, nothing dropped).

`NAME.json` records where a certificate came from (`file`, `acme`, `dev-ca`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge.certs.tls_policy import apply_tls_policy
from shared.errors import ConfigError
from shared.files import write_private

log = logging.getLogger(__name__)

SOURCES = ("file", "acme", "dev-ca")
MAX_CERT_FILE_SIZE = 1_000_000  # a chain file larger than this is refused


@dataclass(frozen=True)
class CertInfo:
    """One certificate pair in the store and what its leaf says."""

    stem: str
    cert_file: Path
    key_file: Path
    names: tuple[str, ...]
    has_ip: bool
    not_before: datetime.datetime
    not_after: datetime.datetime
    issuer: str
    source: str
    fingerprint: str  # sha256 of the leaf, hex

    @property
    def lifetime(self) -> datetime.timedelta:
        return self.not_after - self.not_before

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (self.not_after - now).total_seconds() / 86400


def stem_for(name: str) -> str:
    """The file stem for a certificate whose first name is `name` (`*.x` → `_wildcard.x`)."""
    return name.lower().rstrip(".").replace("*", "_wildcard")


def leaf_names(leaf: x509.Certificate) -> tuple[tuple[str, ...], bool]:
    """The DNS names (lower case) in a certificate's SAN, and whether it lists an IP."""
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), False
    names = tuple(dict.fromkeys(name.lower().rstrip(".") for name in sans.get_values_for_type(x509.DNSName)))
    return names, bool(sans.get_values_for_type(x509.IPAddress))


def read_info(cert_file: Path, key_file: Path) -> CertInfo:
    """Read and check one pair (ConfigError when it is unreadable or the key does not match)."""
    server_context(cert_file, key_file, [])
    try:
        leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"{cert_file}: not a PEM certificate: {exc}") from None
    names, has_ip = leaf_names(leaf)
    if not names and not has_ip:
        raise ConfigError(f"{cert_file}: the certificate lists no DNS name or IP address")
    meta = cert_file.with_suffix(".json")
    source = "file"
    if meta.exists():
        try:
            source = json.loads(meta.read_text()).get("source", "file")
        except (ValueError, AttributeError, OSError):
            source = "file"
    return CertInfo(
        stem=cert_file.stem,
        cert_file=cert_file,
        key_file=key_file,
        names=names,
        has_ip=has_ip,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
        source=source if source in SOURCES else "file",
        fingerprint=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


def write_pair(certs_dir: Path, stem: str, chain_pem: bytes, key_pem: bytes, source: str) -> None:
    """Store a pair atomically: key first (0600), then the metadata, then the chain, which
    is what makes the pair visible to a refresh (a reader never sees a chain without its key)."""
    if not re.fullmatch(r"[a-z0-9_][a-z0-9_.-]*", stem):
        raise ConfigError(f"invalid certificate name {stem!r}")
    write_private(certs_dir / f"{stem}.key", key_pem)
    write_private(certs_dir / f"{stem}.json", json.dumps({"source": source}))
    write_private(certs_dir / f"{stem}.pem", chain_pem)
    (certs_dir / f"{stem}.pem").chmod(0o644)


def remove_pair(certs_dir: Path, stem: str) -> None:
    """Delete a pair: the chain first, so a refresh never sees a chain without its key."""
    for suffix in (".pem", ".key", ".json"):
        (certs_dir / f"{stem}{suffix}").unlink(missing_ok=True)


def scan(certs_dir: Path) -> tuple[list[CertInfo], dict[str, str]]:
    """Every readable pair in `certs_dir`, and {name: problem} for each pair that cannot be used."""
    infos, problems = [], {}
    for cert_file in sorted(certs_dir.glob("*.pem")) if certs_dir.is_dir() else []:
        key_file = cert_file.with_suffix(".key")
        try:
            if not key_file.exists():
                raise ConfigError(f"{cert_file}: its key {key_file.name} is missing")
            infos.append(read_info(cert_file, key_file))
        except ConfigError as exc:
            problems[cert_file.stem] = str(exc)
    return infos, problems


def _signature(certs_dir: Path) -> tuple:
    """What changes when a pair is added, replaced or removed (names, sizes, mtimes)."""
    if not certs_dir.is_dir():
        return ()
    entries = []
    for path in sorted(certs_dir.iterdir()):
        if path.suffix in (".pem", ".key", ".json"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


class CertStore:
    """The certificates in `certs_dir`, kept current by `refresh()`.

    `server_context(alpn)` gives one listener's context: its SNI callback reads the
    current snapshot on every handshake. `challenge_context(name)` (set by the ACME
    TLS-ALPN-01 solver) may answer a name with a challenge certificate instead.
    """

    def __init__(self, certs_dir: Path, zones: tuple[str, ...] = ()) -> None:
        self.certs_dir = Path(certs_dir)
        self.zones = zones  # the fallback for names no certificate covers
        self.infos: tuple[CertInfo, ...] = ()
        self._by_name: dict[str, CertInfo] = {}  # every covered name (and wildcard) → its certificate
        self._signature: tuple | None = None
        self._contexts: dict[tuple[str, str, tuple[str, ...]], ssl.SSLContext] = {}
        self._alpns: set[tuple[str, ...]] = set()  # one per listener context handed out
        self.challenge_context: Callable[[str], ssl.SSLContext | None] = lambda name: None

    @classmethod
    def load(cls, certs_dir: Path, zones: tuple[str, ...] = (), *, required: bool = True) -> CertStore:
        """Read the store; with `required`, a store with no usable certificate is a ConfigError."""
        store = cls(certs_dir, zones)
        problems = store.refresh()
        if required and not store.infos:
            detail = f": {problems[0]}" if problems else ""
            raise ConfigError(
                f"{store.certs_dir}: no usable certificate{detail}; add one with `burrow-edge cert add`, "
                "or use `burrow-edge init --dev-ca` or an ACME directory"
            )
        return store

    def refresh(self) -> list[str]:
        """Re-read the directory if it changed; returns the problems of pairs left out (logged).

        Every listener's context for every certificate is built here, so a handshake never
        reads files. A pair that fails to load (e.g. caught between its key and its chain
        being replaced) keeps its previous certificate in service until it loads again.
        """
        signature = _signature(self.certs_dir)
        if signature == self._signature:
            return []
        infos, problems = scan(self.certs_dir)
        kept = {info.stem: info for info in self.infos}
        contexts: dict[tuple[str, str, tuple[str, ...]], ssl.SSLContext] = {}
        loaded = []
        for info in infos:
            try:
                for alpn in self._alpns:
                    key = (info.stem, info.fingerprint, alpn)
                    contexts[key] = self._contexts.get(key) or server_context(info.cert_file, info.key_file, list(alpn))
            except ConfigError as exc:
                problems[info.stem] = str(exc)
                continue
            loaded.append(info)
        for stem, problem in problems.items():
            log.warning("certs.skipped reason=%s", problem)
            if stem in kept:
                loaded.append(kept[stem])
                contexts.update({key: ctx for key, ctx in self._contexts.items() if key[0] == stem})
        old = {info.stem: info.fingerprint for info in self.infos}
        self.infos = tuple(sorted(loaded, key=lambda info: info.stem))
        by_name: dict[str, CertInfo] = {}
        for info in sorted(self.infos, key=lambda info: info.not_after, reverse=True):  # the later expiry wins
            for name in info.names:
                by_name.setdefault(name, info)
        self._by_name = by_name
        self._contexts = contexts
        self._signature = signature
        if old != {info.stem: info.fingerprint for info in self.infos}:
            log.info("certs.loaded count=%d names=%s", len(self.infos), ",".join(self.names()))
        return list(problems.values())

    def names(self) -> list[str]:
        """Every DNS name (and wildcard) some certificate covers."""
        return sorted({name for info in self.infos for name in info.names})

    def find(self, server_name: str | None) -> CertInfo | None:
        """The certificate for an SNI name (see the module docstring), or None."""
        if not self.infos:
            return None
        if not server_name:
            return next((info for info in self.infos if info.has_ip), self.infos[0])
        name = server_name.lower().rstrip(".")
        parent = name.split(".", 1)[1] if "." in name else None
        zone = next((z for z in self.zones if name == z or name.endswith(f".{z}")), self.zones[0] if self.zones else "")
        by_name = self._by_name
        return by_name.get(name) or (by_name.get(f"*.{parent}") if parent else None) or by_name.get(zone)

    def context_for(self, info: CertInfo, alpn: list[str]) -> ssl.SSLContext:
        key = (info.stem, info.fingerprint, tuple(alpn))
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = server_context(info.cert_file, info.key_file, alpn)
        return context

    def server_context(self, alpn: list[str], *, acme_tls: bool = False) -> ssl.SSLContext:
        """A TLS ≥ 1.2 context for one listener whose SNI callback picks the certificate.
        With `acme_tls` a pending TLS-ALPN-01 challenge for the name takes precedence."""
        self._alpns.add(tuple(alpn))
        for info in self.infos:
            self.context_for(info, alpn)
        front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        front.minimum_version = ssl.TLSVersion.TLSv1_2
        if alpn:
            front.set_alpn_protocols(alpn)

        def choose(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> int | None:
            if acme_tls and server_name:
                challenge = self.challenge_context(server_name.lower().rstrip("."))
                if challenge is not None:
                    sock.context = challenge
                    return None
            info = self.find(server_name)
            if info is None:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            try:
                sock.context = self.context_for(info, alpn)
            except ConfigError as exc:  # the files changed under us; the next refresh sorts it out
                log.warning("certs.unusable reason=%s", exc)
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            return None

        front.sni_callback = choose
        return front


def server_context(cert_file: Path, key_file: Path, alpn: list[str]) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context for one certificate pair (ConfigError on a bad pair)."""
    context = apply_tls_policy(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(f"{key_file}: does not match the certificate in {cert_file.name}") from None
        raise ConfigError(f"{cert_file}: cannot load certificate and key: {exc.reason or exc}") from None
    except OSError as exc:
        raise ConfigError(f"{cert_file}: cannot read: {exc.strerror or exc}") from None
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
