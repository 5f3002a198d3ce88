"""`originRequest`: cloudflared's per-origin settings, validated into an immutable `OriginRequest`.

The top-level block gives defaults; a rule's block overrides them key by key.
Pure, except that the files `caPool`, `clientCertificate` and `clientKey` name are
read when the config is loaded. A file that cannot
be read is an issue of its own kind (`Issue.file`): only serving the origin needs
it, so checking the rules offline warns (cloudflared reads it when the origin is
first used) while `tunnel run` refuses to start without it.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.events import HOP_BY_HOP
from shared.values import parse_duration
from shared.yaml_lines import line_of, type_name


@dataclass(frozen=True)
class Access:
    """`originRequest.access`: with `required`, requests need a valid edge assertion (connector.access_jwt).

    `teamName` is the edge's HTTPS `HOST[:PORT]` serving the JWKS (default: its zone on 443);
    `audTag` the accepted audiences (default: the request's hostname)."""

    required: bool = False
    team_name: str = ""
    aud_tag: tuple[str, ...] = ()
    environment: str = ""


@dataclass(frozen=True)
class OriginRequest:
    """Every `originRequest` key Burrow implements, with cloudflared's defaults."""

    connect_timeout: float = 30.0
    tls_timeout: float = 10.0
    tcp_keep_alive: float = 30.0
    no_happy_eyeballs: bool = False
    keep_alive_connections: int = 100
    keep_alive_timeout: float = 90.0
    http_host_header: str = ""
    origin_server_name: str = ""
    match_sni_to_host: bool = False
    ca_pool: str = ""
    ca_pem: str = field(default="", repr=False)  # the contents of `ca_pool`
    no_tls_verify: bool = False
    disable_chunked_encoding: bool = False
    http2_origin: bool = False
    access: Access = Access()
    proxy_protocol: str = ""  # "v1" | "v2"
    client_certificate: str = ""
    client_key: str = ""
    client_digest: str = field(default="", repr=False)  # of both files' contents: a changed pair is a new identity
    strip_path_prefix: bytes = b""
    set_request_headers: tuple[tuple[bytes, bytes], ...] = ()
    remove_request_headers: frozenset[bytes] = frozenset()
    set_response_headers: tuple[tuple[bytes, bytes], ...] = ()
    remove_response_headers: frozenset[bytes] = frozenset()


@dataclass(frozen=True)
class Issue:
    """One problem with one key; `path` is dotted below `originRequest` (e.g. "access.teamName").
    `file`: a file the key names cannot be read (an error only when the origin is served)."""

    path: str
    message: str
    line: int | None
    warning: bool = False
    file: bool = False


class Invalid(Exception):
    """A value a checker refuses, with the reason (also used by `pools`)."""


# ---------------------------------------------------------------------------
# Value checkers: raw YAML value → Python value, or Invalid with the reason


def duration(value: Any) -> float:
    """Go's time.ParseDuration format, as cloudflared reads YAML: a unit is required (except "0")."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(f"must be a duration like 30s, not {type_name(value)}")
    if not isinstance(value, str) or re.fullmatch(r"\s*[0-9.]+\s*", value) and value.strip() != "0":
        raise Invalid(f"duration {value!r} needs a unit, e.g. {value}s (units: ns, us, ms, s, m, h)")
    try:
        return parse_duration(value)
    except ConfigError:
        raise Invalid(f"invalid duration {value!r} (examples: 30s, 1m30s, 500ms)") from None


def _of_type(kind: type, expected: str, show_value: bool = False) -> Callable[[Any], Any]:
    """A checker that `value` is a `kind`."""

    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            shown = f" {value!r}" if show_value else ""
            raise Invalid(f"must be {expected}, not {type_name(value)}{shown}")
        return value

    return check


def whole(low: int, high: float, expected: str) -> Callable[[Any], int]:
    """A checker that `value` is an int from `low` to `high`."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"must be {expected}, not {value!r}")
        return value

    return check


_bool = _of_type(bool, "true or false", show_value=True)
_string = _of_type(str, "a string")
_list = _of_type(list, "a list")
_count = whole(0, math.inf, "a whole number ≥ 0")
_port = whole(0, 65535, "a port number 0-65535")


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(_string(item) for item in _list(value))


def one_of(*allowed: str) -> Callable[[Any], str]:
    """A checker that `value` is one of `allowed`."""

    def check(value: Any) -> str:
        if value not in allowed:
            raise Invalid(f"must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")
        return value

    return check


def _path_prefix(value: Any) -> bytes:
    """A path prefix such as /api (a final / dropped): it is stripped only at a segment boundary."""
    if not isinstance(value, str) or not re.fullmatch(r"/[!-~]*", value) or "?" in value or "#" in value:
        raise Invalid(f"must be a path such as /api (no spaces, ? or #), not {value!r}")
    if value.strip("/") == "":
        raise Invalid(f"{value!r} strips nothing: give a path such as /api")
    return value.rstrip("/").encode("ascii")


TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
FRAMING = HOP_BY_HOP | {b"content-length"}  # Burrow frames every message itself


def _header_names(request: bool) -> Callable[[Any], frozenset[bytes]]:
    """A checker for a list of header names that may be edited (lower-cased)."""

    def check(value: Any) -> frozenset[bytes]:
        return frozenset(_header_name(name, request) for name in _strings(value))

    return check


def _header_values(request: bool) -> Callable[[Any], tuple[tuple[bytes, bytes], ...]]:
    """A checker for a mapping of header name → value (a string or a number)."""

    def check(value: Any) -> tuple[tuple[bytes, bytes], ...]:
        if not isinstance(value, Mapping):
            raise Invalid(f"must be a mapping of header name → value, not {type_name(value)}")
        return tuple((_header_name(name, request), _header_value(name, text)) for name, text in value.items())

    return check


def _header_name(name: Any, request: bool) -> bytes:
    if not isinstance(name, str) or not TOKEN.fullmatch(name):
        raise Invalid(f"{name!r} is not a valid header name")
    lower = name.lower().encode("ascii")
    if lower in FRAMING:
        raise Invalid(f"{name!r} cannot be edited: Burrow sets the connection and framing headers itself")
    if request and lower == b"host":
        raise Invalid(f"{name!r} cannot be edited here: use httpHostHeader")
    return lower


def _header_value(name: str, value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(f"the value of {name!r} must be a string, not {type_name(value)}")
    text = str(value)
    if not re.fullmatch(r"[\t\x20-\x7e]*", text):
        raise Invalid(f"the value of {name!r} must be printable ASCII, not {text!r}")
    return text.encode("ascii")


# key → (OriginRequest field, checker); None as field: a cloudflared key Burrow checks but ignores.
KEYS: dict[str, tuple[str | None, Callable[[Any], Any]]] = {
    "connectTimeout": ("connect_timeout", duration),
    "tlsTimeout": ("tls_timeout", duration),
    "tcpKeepAlive": ("tcp_keep_alive", duration),
    "noHappyEyeballs": ("no_happy_eyeballs", _bool),
    "keepAliveConnections": ("keep_alive_connections", _count),
    "keepAliveTimeout": ("keep_alive_timeout", duration),
    "httpHostHeader": ("http_host_header", _string),
    "originServerName": ("origin_server_name", _string),
    "matchSNItoHost": ("match_sni_to_host", _bool),
    "caPool": ("ca_pool", _string),
    "noTLSVerify": ("no_tls_verify", _bool),
    "disableChunkedEncoding": ("disable_chunked_encoding", _bool),
    "http2Origin": ("http2_origin", _bool),
    "access": ("access", lambda value: value),  # checked by _access, which knows the lines
    "proxyProtocol": ("proxy_protocol", one_of("v1", "v2")),
    "clientCertificate": ("client_certificate", _string),
    "clientKey": ("client_key", _string),
    "stripPathPrefix": ("strip_path_prefix", _path_prefix),
    "setRequestHeaders": ("set_request_headers", _header_values(request=True)),
    "removeRequestHeaders": ("remove_request_headers", _header_names(request=True)),
    "setResponseHeaders": ("set_response_headers", _header_values(request=False)),
    "removeResponseHeaders": ("remove_response_headers", _header_names(request=False)),
    "bastionMode": (None, _bool),
    "proxyAddress": (None, _string),
    "proxyPort": (None, _port),
    "proxyType": (None, _string),
    "ipRules": (None, _list),
}
ACCESS_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "required": ("required", _bool),
    "teamName": ("team_name", _string),
    "audTag": ("aud_tag", _strings),
    "environment": ("environment", _string),
}


def parse(raw: Any, line: int | None = None) -> tuple[dict[str, Any], list[Issue]]:
    """The keys `raw` sets, as OriginRequest field → value (for per-key merging), and its issues."""
    if not isinstance(raw, Mapping):
        return {}, [Issue("", f"must be a mapping of keys, not {type_name(raw)}", line)]
    values: dict[str, Any] = {}
    issues: list[Issue] = []
    for key, value in raw.items():
        key_line = line_of(raw, key)
        if key not in KEYS:
            issues.append(Issue(str(key), unknown_key(key, KEYS), key_line))
            continue
        name, check = KEYS[key]
        try:
            checked = check(value)
        except Invalid as exc:
            issues.append(Issue(key, str(exc), key_line))
            continue
        if name is None:
            issues.append(Issue(key, "is not supported by Burrow yet and is ignored", key_line, warning=True))
        elif key == "access":
            access, access_issues = _access(value, key_line)
            issues += access_issues
            if access is not None:
                values[name] = access
        else:
            values[name] = checked
    if "ca_pool" in values and values["ca_pool"]:
        try:
            values["ca_pem"] = _read_pem(values["ca_pool"], "CERTIFICATE", "certificate")
        except Invalid as exc:
            issues.append(Issue("caPool", str(exc), line_of(raw, "caPool"), file=True))
    if values.get("client_certificate") or values.get("client_key"):
        issues += _client_identity(values, raw)
    return values, issues


def unknown_key(key: object, known) -> str:
    """ "unknown key (did you mean 'service'?)", or the list of known keys."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f"unknown key (did you mean {close[0]!r}?)" if close else f"unknown key (known: {', '.join(sorted(known))})"


def merged(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> OriginRequest:
    """Rule keys over top-level keys over cloudflared's defaults."""
    return OriginRequest(**{**defaults, **overrides})


def _access(raw: Any, line: int | None) -> tuple[Access | None, list[Issue]]:
    if not isinstance(raw, Mapping):
        return None, [Issue("access", f"must be a mapping (required, teamName, audTag), not {type_name(raw)}", line)]
    values, issues = {}, []
    for key, value in raw.items():
        key_line = line_of(raw, key)
        if key not in ACCESS_KEYS:
            issues.append(Issue(f"access.{key}", unknown_key(key, ACCESS_KEYS), key_line))
            continue
        name, check = ACCESS_KEYS[key]
        try:
            values[name] = check(value)
        except Invalid as exc:
            issues.append(Issue(f"access.{key}", str(exc), key_line))
    if issues:
        return None, issues
    access = Access(**values)
    if access.team_name and not re.fullmatch(r"(https://)?[A-Za-z0-9.-]+(:\d{1,5})?/?", access.team_name):
        issues.append(Issue("access.teamName", f"must be the edge's HTTPS HOST[:PORT], not {access.team_name!r}", line))
    return access, issues


def _client_identity(values: dict[str, Any], raw: Mapping) -> list[Issue]:
    """Check that clientCertificate and clientKey come together, are readable and match;
    set `client_digest` (and the paths, expanded) when they do."""
    cert, key = values.get("client_certificate", ""), values.get("client_key", "")
    if not cert or not key:
        present, missing = ("clientCertificate", "clientKey") if cert else ("clientKey", "clientCertificate")
        return [Issue(present, f"needs {missing} too (both in the same originRequest)", line_of(raw, present))]
    try:
        cert_pem = _read_pem(cert, "CERTIFICATE", "certificate")
    except Invalid as exc:
        return [Issue("clientCertificate", str(exc), line_of(raw, "clientCertificate"), file=True)]
    try:
        key_pem = _read_pem(key, "PRIVATE KEY", "private key")
        _load_pair(cert, key)
    except Invalid as exc:
        return [Issue("clientKey", str(exc), line_of(raw, "clientKey"), file=True)]
    values["client_certificate"] = str(Path(cert).expanduser())
    values["client_key"] = str(Path(key).expanduser())
    values["client_digest"] = hashlib.sha256((cert_pem + key_pem).encode()).hexdigest()
    return []


class _Encrypted(Exception):
    pass


def _refuse_password() -> str:
    raise _Encrypted


def _load_pair(cert: str, key: str) -> None:
    """Load the pair as an origin connection will, so that a bad key fails now, not per request."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            Path(cert).expanduser(), Path(key).expanduser(), password=_refuse_password
        )
    except _Encrypted:
        raise Invalid(f"{key} is encrypted: Burrow needs the key unencrypted (readable only by its user)") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise Invalid(f"{key} is not the key of clientCertificate {cert}") from None
        raise Invalid(f"cannot load {cert} with {key}: {exc.reason or exc}") from None


def _read_pem(path: str, label: str, what: str) -> str:
    """The text of a PEM file that holds a `-----BEGIN …{label}-----` block."""
    try:
        pem = Path(path).expanduser().read_text(encoding="ascii")
    except FileNotFoundError:
        raise Invalid(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Invalid(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not re.search(rf"-----BEGIN [A-Z ]*{label}-----", pem):
        raise Invalid(f"{path} holds no PEM {what}")
    return pem
