"""PostgreSQL connection strings, in URL form (`postgresql://user:pw@host/db`) or keyword
form (`host=... password=...`): their passwords kept out of log lines and messages, and the
URL form yoyo needs.

`password_of(url)` is what `guideline_core.db` registers with the log formatter (which then
writes `***` for it anywhere: messages, extra fields, tracebacks); `redact(text)`, applied
by the formatter too, removes any password that looks like one of a connection string,
also of strings never registered.
Both regular expressions below start with a literal and cannot backtrack far: a log line of
any content is redacted in linear time.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

MASK = "***"
# `password = value` or `password='quoted \' value'` of the keyword form; a backslash ends
# an unquoted value so that a JSON-escaped quote after it stays intact.
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'\"\\]+)", re.I)
# `://user:password@` of the URL form (and `?password=` is the keyword rule above).
_URL_PASSWORD = re.compile(r"(://[^\s/@:]*:)[^\s/@]*@")


def redact(text: str) -> str:
    """`text` with every password of a connection string replaced by `***`."""
    if "password" in text.lower():
        text = _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)
    return text


def _parse(url: str) -> dict[str, str]:
    """libpq's reading of a connection string; ValueError (its reason, redacted) if it
    cannot be read."""
    # Imported here, not above: the log formatter imports this module in every process,
    # the runner pod's among them, which mostly never talks to PostgreSQL.
    import psycopg2
    from psycopg2.extensions import parse_dsn

    try:
        return parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        raise ValueError(redact(str(exc))) from None


def password_of(url: str) -> list[str]:
    """The password of a connection string, as written and as libpq reads it (empty if
    none or if the string cannot be parsed)."""
    found: list[str] = []
    try:
        parsed = _parse(url)
    except ValueError:
        parsed = {}
    if parsed.get("password"):
        found.append(parsed["password"])
    if "://" in url:
        try:
            raw = urlsplit(url).password
        except ValueError:
            raw = None
        if raw and raw not in found:
            found.append(raw)  # still %-encoded
    return found


def to_uri(url: str) -> str:
    """`url` in URL form (yoyo accepts no other): a keyword-form string is converted, a URL
    is returned as it is. Raises ValueError (with no password in its message) if `url` is
    neither."""
    if "://" in url:
        return url
    try:
        params = _parse(url)
    except ValueError as exc:
        raise ValueError(f"database URL is not a valid connection string: {exc}") from None
    # Only the credentials and the database in the URL's parts; host, port and the rest as
    # query parameters, which yoyo hands to psycopg2 as keywords (a socket directory too).
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else f"{user}@"
    dbname = quote(params.pop("dbname", ""), safe="")
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql://{auth}/{dbname}" + (f"?{query}" if query else "")
