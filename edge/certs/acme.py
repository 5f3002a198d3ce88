"""Certificates from an ACME CA, obtained and renewed by the running edge.

What it manages: for each zone, one certificate for `*.ZONE` and `ZONE` through
DNS-01 (answered by the edge's own DNS server); with quick tunnels on, one for
`*.quick.ZONE` (the first zone) the same way; for each name in `acme-challenges`,
one certificate through the challenge named there.

When: at start for a certificate the store lacks, then at two thirds of its
lifetime. A failure is retried after `acme-retry` (default 5 min), doubling up to
6 h, with ±20 % jitter, and never before a `Retry-After` the CA sent. The
certificate in service stays until a new one is stored. Progress and failures go
to the log and to `acme/state.json` (`burrow-edge cert status`).
"""

from __future__ import annotations

import datetime
import logging
import random
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.certs.acme_client import REQUEST_TIMEOUT, AcmeClient, AcmeError, Challenge
from edge.certs.acme_state import AcmeEntry, load_state, save_state
from edge.certs.challenges import Challenges
from edge.certs.files import check_pair
from edge.certs.store import CertInfo, CertStore, stem_for, write_pair
from edge.dns.zone import QUICK_LABEL
from shared.edge_config import EdgeConfig
from shared.errors import ConfigError
from shared.files import write_private

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per ACME request is noise; acme.* says what happens

RENEW_AT = 2 / 3  # of a certificate's lifetime
RETRY_MAX = 6 * 3600.0
JITTER = 0.2
ISSUE_TIMEOUT = 300.0  # one whole order, from new-order to download
STORE_CHECK = 5.0  # how often the manager looks for a managed certificate gone from the store
ACCOUNT_KEY = Path("acme") / "account.key"


@dataclass(frozen=True)
class Wanted:
    """A certificate the edge keeps: its file name, its names and how they are validated."""

    stem: str
    names: tuple[str, ...]
    challenge: str


def wanted_certificates(cfg: EdgeConfig, quick_tunnels: bool = False) -> list[Wanted]:
    wanted = [Wanted(stem_for(zone), (f"*.{zone}", zone), "dns-01") for zone in cfg.zones]
    if quick_tunnels:  # WORD-WORD-WORD.quick.ZONE: two labels below the zone, which `*.ZONE` does not cover
        name = f"*.{QUICK_LABEL}.{cfg.zone}"
        wanted.append(Wanted(stem_for(name), (name,), "dns-01"))
    wanted += [Wanted(stem_for(name), (name,), kind) for name, kind in cfg.acme_challenges.items()]
    return wanted


def renewal_time(info: CertInfo) -> datetime.datetime:
    return info.not_before + info.lifetime * RENEW_AT


def retry_delay(failures: int, first: float, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before the next attempt after `failures` failures in a row."""
    delay = min(first * 2 ** max(0, failures - 1), RETRY_MAX) * rng.uniform(1 - JITTER, 1 + JITTER)
    return max(delay, retry_after or 0.0)


def load_account_key(home: Path) -> ec.EllipticCurvePrivateKey:
    """The ACME account key (`acme/account.key`, 0600), made on first use."""
    path = home / ACCOUNT_KEY
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a usable account key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{path}: the account key must be an EC P-256 key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    write_private(path, _key_pem(key))
    return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def acme_tls_verify(cfg: EdgeConfig) -> ssl.SSLContext:
    """How to check the ACME server's certificate: the system store, plus `acme-ca-file`."""
    context = ssl.create_default_context()
    if cfg.acme_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(cfg.acme_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"acme-ca-file {cfg.acme_ca_file}: cannot load: {getattr(exc, 'strerror', None) or exc}") from None
    return context


class AcmeManager:
    """Keeps every wanted certificate issued and renewed; see the module docstring."""

    def __init__(
        self, cfg: EdgeConfig, store: CertStore, challenges: Challenges, rng: random.Random | None = None, *, quick_tunnels: bool = False,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.challenges = challenges
        self.rng = rng or random.Random()
        self.wanted = {w.stem: w for w in wanted_certificates(cfg, quick_tunnels)}
        saved = load_state(cfg.home)
        now = _now()
        self.entries: dict[str, AcmeEntry] = {}
        for stem, wanted in self.wanted.items():
            entry = AcmeEntry(wanted.names, wanted.challenge)
            old = saved.get(stem)
            if old is not None and old.names == wanted.names:  # a restart neither forgets failures nor retries early
                entry.failures, entry.last_failure, entry.last_failure_at = old.failures, old.last_failure, old.last_failure_at
                entry.last_success = old.last_success
            info = self._info(stem)
            entry.next_attempt = renewal_time(info) if info is not None else now
            if old is not None and old.failures and old.next_attempt and old.next_attempt > entry.next_attempt:
                entry.next_attempt = old.next_attempt
            self.entries[stem] = entry

    def _info(self, stem: str) -> CertInfo | None:
        return next((info for info in self.store.infos if info.stem == stem), None)

    async def run(self) -> None:
        verify = acme_tls_verify(self.cfg)
        key = load_account_key(self.cfg.home)
        save_state(self.cfg.home, self.entries)
        async with httpx.AsyncClient(verify=verify, timeout=REQUEST_TIMEOUT, follow_redirects=False) as http:
            client = AcmeClient(http, self.cfg.acme_directory, key, self.cfg.acme_email)
            while True:
                for stem, entry in self.entries.items():
                    if entry.failures == 0 and self._info(stem) is None:  # never issued, or removed with `cert remove`
                        entry.next_attempt = _now()
                    if entry.next_attempt is not None and entry.next_attempt <= _now():
                        await self.attempt(client, stem)
                        save_state(self.cfg.home, self.entries)
                upcoming = min((e.next_attempt for e in self.entries.values() if e.next_attempt), default=None)
                wait = (upcoming - _now()).total_seconds() if upcoming else STORE_CHECK
                await trio.sleep(min(max(wait, 0.5), STORE_CHECK))

    async def attempt(self, client: AcmeClient, stem: str) -> None:
        """One try at obtaining `stem`'s certificate; failures are recorded, never raised."""
        wanted, entry = self.wanted[stem], self.entries[stem]
        info = self._info(stem)
        if info is not None and info.source != "acme":
            log.info("acme.skipped name=%s reason=a %s certificate is stored under this name", stem, info.source)
            entry.next_attempt = None
            return
        log.info("acme.ordering name=%s names=%s challenge=%s renewal=%s", stem, ",".join(wanted.names), wanted.challenge, info is not None)
        try:
            self._check_names(wanted)
            cert_key = ec.generate_private_key(ec.SECP256R1())
            with trio.fail_after(ISSUE_TIMEOUT):
                chain = await client.issue(list(wanted.names), lambda name: wanted.challenge, self._answer, cert_key)
            checked = check_pair(chain, _key_pem(cert_key), f"the certificate the CA issued for {stem}", "its key", check_trust=False)
            write_pair(self.cfg.certs_dir, stem, chain, _key_pem(cert_key), "acme")
        except (AcmeError, ConfigError, trio.TooSlowError, KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = _reason(exc)
            retry_after = getattr(exc, "retry_after", None)
            entry.failures += 1
            entry.last_failure, entry.last_failure_at = reason, _now()
            delay = retry_delay(entry.failures, self.cfg.acme_retry, retry_after, self.rng)
            entry.next_attempt = _now() + datetime.timedelta(seconds=delay)
            log.warning(
                "acme.failed name=%s failures=%d retry_in=%.0fs keeps_serving=%s reason=%s",
                stem, entry.failures, delay, info.fingerprint[:12] if info else "nothing", reason,
            )
            return
        self.store.refresh()
        new = self._info(stem)
        entry.failures, entry.last_success = 0, _now()
        entry.next_attempt = renewal_time(new) if new is not None else _now() + datetime.timedelta(seconds=self.cfg.acme_retry)
        log.info(
            "acme.issued name=%s names=%s expires=%s next_renewal=%s",
            stem, ",".join(checked.names), checked.leaf.not_valid_after_utc.isoformat(), entry.next_attempt.isoformat(),
        )

    def _check_names(self, wanted: Wanted) -> None:
        if wanted.challenge != "dns-01":
            if wanted.challenge == "http-01" and self.cfg.http_listen is None:
                raise ConfigError(f"{wanted.stem}: http-01 needs a plain-HTTP listener (http-listen)")
            return
        for name in wanted.names:
            base = name.removeprefix("*.")
            if not any(base == zone or base.endswith(f".{zone}") for zone in self.cfg.zones):
                raise ConfigError(f"{name}: dns-01 needs a name in a zone this edge serves; use http-01 or tls-alpn-01")

    def _answer(self, challenge: Challenge):
        return self.challenges.published(challenge.kind, challenge.name, challenge.token, challenge.key_authorization)


def _reason(exc: Exception) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"no certificate within {ISSUE_TIMEOUT:g}s"
    if isinstance(exc, (AcmeError, ConfigError)):
        return str(exc)
    return f"the CA's answer is not what RFC 8555 describes ({type(exc).__name__}: {exc})"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
