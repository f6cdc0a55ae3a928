"""Credentials out of text: URLs with a password, secret query parameters, key=value secrets.

Settings hold URLs that may carry credentials (`http://user:pass@mlflow`, `postgresql://u:p@h/db`,
a presigned S3 URL's `X-Amz-Signature`). Anything that shows such a URL or an error message that
quotes one (readiness, 503 bodies, logs, `crimeflow config show`) passes it through `redact`
first; links people open are derived with `without_credentials`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "********"

# scheme://user:password@ -> scheme://user:********@ ; the password may hold an unencoded '@'
# (greedy up to the last '@' before the path), never a '/' or whitespace.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s\"']*:)[^/\s\"']+@")
# name=value pairs (query strings, libpq key/value DSNs, form bodies); the value is masked when
# the name says secret (`SECRET_NAME`), prefixes and suffixes allowed (X-Amz-Signature).
_PARAM = re.compile(r"(?:(?<=[?&;\s\"',])|^)(?P<name>[\w.\-]+)=(?P<value>[^&\s#;\"',]+)")
SECRET_NAME = re.compile(
    r"pass|pwd|token|secret|signature|sig|credential|apikey|api_key|access_key|auth", re.I
)


def _mask_param(match: re.Match[str]) -> str:
    """One name=value pair, its value masked if the name says secret."""
    name = match["name"]
    return f"{name}={MASK}" if SECRET_NAME.search(name) else match[0]


def redact(text: str) -> str:
    """`text` with URL passwords and secret-named parameters' values replaced by ********."""
    # Cheap pre-checks: most text (every access-log line) holds neither shape.
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    return text


def without_credentials(url: str) -> str:
    """`url` without its user:password@ part (a link to open must not carry credentials)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return redact(url)
    if host is None or "@" not in parts.netloc:
        return url
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))
