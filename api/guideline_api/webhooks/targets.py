"""Which callback URLs the service will call: `http`/`https` URLs whose host resolves only
to globally routable addresses. Every special-purpose range of the IANA IPv4 and IPv6
registries that is not globally reachable is refused, by explicit lists below (not the
interpreter's `ipaddress.is_global`, whose answer differs between Python releases), so a
webhook cannot become a way to reach the service's own network; addresses that embed an
IPv4 address (IPv4-mapped, NAT64) are judged by it. `webhook_allow_private` lifts the
address check. Checked when a job is submitted and again before every delivery, which then
connects to the very address it checked (DNS can change in between).

A refusal tells the member only "not allowed": not what the host resolved to, nor whether
it resolved at all (that would make the check a DNS oracle for internal names); the
service's log gets the details."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_URL_CHARS = 2048
SCHEMES = ("http", "https")


class TargetRefusedError(ValueError):
    """A callback URL the service will not call. The message is what the caller is told;
    `detail` (for the service's log only) may say what the host resolved to."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail or message


NOT_ALLOWED = "not allowed"

# IPv4 special-purpose ranges that are not globally reachable (IANA registry), and the
# whole of 192.0.0.0/24 (protocol assignments) and the deprecated 6to4 relay anycast.
REFUSED_V4 = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local (cloud metadata)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
# IPv6: only global unicast (2000::/3) may be called, less these parts of it.
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
REFUSED_V6 = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: relays reach the IPv4 address it embeds
        "3fff::/20",  # documentation
    )
)
IPV4_MAPPED_V6 = ipaddress.IPv6Network("::ffff:0:0/96")
NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the IPv4 decides


def address_allowed(address: str) -> bool:
    """Whether a webhook may connect to `address` (an IP literal, perhaps with a %zone)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in IPV4_MAPPED_V6 or ip in NAT64_V6:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        else:
            return ip in GLOBAL_UNICAST_V6 and not any(ip in net for net in REFUSED_V6)
    return not any(ip in net for net in REFUSED_V4)


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


def resolve(url: str, allow_private: bool) -> Target:
    """Check `url` and resolve its host; every address it resolves to must be allowed
    (one bad address is enough to refuse: a resolver may hand out any of them)."""
    parts = check_form(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefusedError(NOT_ALLOWED, f"host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefusedError(NOT_ALLOWED, f"host {host!r} has no address")
    if not allow_private:
        for address in addresses:
            if not address_allowed(address):
                raise TargetRefusedError(
                    NOT_ALLOWED, f"host {host!r} resolves to {address}, a non-global address"
                )
    return Target(url=url, host=host, address=addresses[0])
