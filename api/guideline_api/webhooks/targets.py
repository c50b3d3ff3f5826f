"""Which callback URLs the service will call: `http`/`https` URLs whose host resolves only
to globally routable addresses. Private, loopback, link-local, multicast and reserved
targets are refused (a webhook must not become a way to reach the service's own network)
unless `webhook_allow_private` is set. Checked when a job is submitted and again before
every delivery, which then connects to the very address it checked (DNS can change in
between)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")


class TargetRefusedError(ValueError):
    """A callback URL the service will not call, with the reason."""


@dataclass(frozen=True)
class Target:
    """A checked callback URL and the address to connect to."""

    url: str
    host: str
    address: str  # the checked IP the delivery connects to

    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address."""
        parts = urlsplit(self.url)
        ip = f"[{self.address}]" if ":" in self.address else self.address
        netloc = ip if parts.port is None else f"{ip}:{parts.port}"
        return parts._replace(netloc=netloc).geturl()

    def host_header(self) -> str:
        """The Host header the URL's own host and port make."""
        parts = urlsplit(self.url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if parts.port is None else f"{host}:{parts.port}"


def check_form(url: str) -> SplitResult:
    """The parts of a well-formed callback URL; TargetRefusedError saying what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise TargetRefusedError(f"longer than {MAX_URL_CHARS} characters")
    if any(c <= " " or c == "\x7f" for c in url):
        raise TargetRefusedError("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefusedError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise TargetRefusedError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise TargetRefusedError("has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefusedError("must not carry credentials (user:password@)")
    if port == 0:
        raise TargetRefusedError("port 0 is not a valid port")
    if parts.fragment:
        raise TargetRefusedError("must not have a #fragment")
    return parts


def _refusal(address: str) -> str | None:
    """Why an address may not be called (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return kind
    return None if ip.is_global else "not globally routable"


def resolve(url: str, allow_private: bool) -> Target:
    """Check `url` and resolve its host; every address it resolves to must be allowed
    (one bad address is enough to refuse: a resolver may hand out any of them)."""
    parts = check_form(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefusedError(f"host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefusedError(f"host {host!r} has no address")
    if not allow_private:
        for address in addresses:
            kind = _refusal(address)
            if kind is not None:
                raise TargetRefusedError(
                    f"host {host!r} resolves to {address}, a {kind} address; webhooks go "
                    "only to public addresses (GUIDELINE_WEBHOOK_ALLOW_PRIVATE allows others)"
                )
    return Target(url=url, host=host, address=addresses[0])
