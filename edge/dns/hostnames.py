"""Pure checks for the hostnames an account may route: DNS syntax, IDN, zones.

`route_hostname` is the one gate for CNAME records; `txt_hostname` for TXT
records (which may use `_underscore` labels, e.g. `_acme-challenge`). Both
return the name as stored: lower-case, IDN labels as punycode, no final dot.
"""

from __future__ import annotations

import encodings.idna
import re
from collections.abc import Sequence

from edge.dns.zone import NS_LABEL, QUICK_LABEL, TUNNELS_LABEL
from shared.errors import ConfigError

MAX_HOSTNAME = 253
MAX_LABEL = 63
LABEL_RE = re.compile(r"[a-z0-9-]+")
TXT_LABEL_RE = re.compile(r"_?[a-z0-9-]+")


def _ascii_label(label: str, hostname: str) -> str:
    if label.isascii():
        return label.lower()
    try:
        return encodings.idna.ToASCII(label).decode("ascii").lower()
    except UnicodeError:
        raise ConfigError(f"hostname {hostname!r}: label {label!r} is not a valid internationalized name") from None


def normalize(hostname: str, *, allow_underscore: bool = False) -> str:
    """`hostname` lower-cased and punycoded, if it is a valid DNS name (wildcard only as the first label)."""
    if not isinstance(hostname, str) or not hostname.strip():
        raise ConfigError("hostname is empty")
    name = hostname.strip()
    name = name[:-1] if name.endswith(".") else name
    labels = name.split(".")
    pattern = TXT_LABEL_RE if allow_underscore else LABEL_RE
    out = []
    for position, raw in enumerate(labels):
        if not raw:
            raise ConfigError(f"hostname {hostname!r} has an empty label")
        if "*" in raw:
            if raw != "*" or position != 0:
                raise ConfigError(f"hostname {hostname!r}: '*' is allowed only as the whole first label, as in '*.dev.example.com'")
            out.append("*")
            continue
        label = _ascii_label(raw, hostname)
        if len(label) > MAX_LABEL:
            raise ConfigError(f"hostname {hostname!r}: label {label[:20]!r}… is longer than {MAX_LABEL} characters")
        if not pattern.fullmatch(label):
            raise ConfigError(f"hostname {hostname!r}: label {label!r} may only hold a-z, 0-9 and '-'")
        if label.startswith("-") or label.endswith("-"):
            raise ConfigError(f"hostname {hostname!r}: label {label!r} must not start or end with '-'")
        out.append(label)
    if len(out) == 1 and out[0] == "*":
        raise ConfigError(f"hostname {hostname!r}: a wildcard needs a name below a zone, as in '*.dev.example.com'")
    host = ".".join(out)
    if len(host) > MAX_HOSTNAME:
        raise ConfigError(f"hostname {hostname!r} is longer than {MAX_HOSTNAME} characters")
    return host


def zone_of(host: str, zone_names: Sequence[str]) -> str | None:
    """The longest of `zone_names` containing `host` (the apex counts), or None."""
    zones = [z.lower().rstrip(".") for z in zone_names]
    return max((z for z in zones if host == z or host.endswith("." + z)), key=len, default=None)


def _in_zone(host: str, hostname: str, zone_names: Sequence[str]) -> str:
    zone = zone_of(host, zone_names)
    if zone is None:
        names = ", ".join(f"'{z}'" for z in zone_names)
        plural = "s" if len(zone_names) > 1 else ""
        raise ConfigError(f"hostname '{host}' is outside the zone{plural} {names}")
    for label, purpose in ((TUNNELS_LABEL, "tunnel targets"), (QUICK_LABEL, "quick tunnels")):
        reserved = f"{label}.{zone}"
        if host == reserved or host.endswith("." + reserved):
            raise ConfigError(f"hostname '{host}' is under '{reserved}', which the edge keeps for {purpose}")
    return zone


def route_hostname(hostname: str, zone_names: Sequence[str]) -> tuple[str, str]:
    """(normalized host, its zone) for a CNAME route: inside a zone, not its apex, not under `tunnels.`."""
    host = normalize(hostname)
    zone = _in_zone(host, hostname, zone_names)
    if host == zone:
        raise ConfigError(f"hostname '{host}' is the zone apex; route a name below it")
    if host == f"{NS_LABEL}.{zone}":
        raise ConfigError(f"hostname '{host}' is the edge's own name server; route another name")
    return host, zone


def txt_hostname(hostname: str, zone_names: Sequence[str]) -> tuple[str, str]:
    """(normalized host, its zone) for TXT records: `_labels` and the apex allowed."""
    host = normalize(hostname, allow_underscore=True)
    return host, _in_zone(host, hostname, zone_names)
