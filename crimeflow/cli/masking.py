"""Credentials out of URLs before the shell prints them (`crimeflow doctor`, the Prefect line).

A minimal local stand-in: the secret-masking work of issue #13 adds the project's mask function
to crimeflow.contract; on merge, this module should defer to that one.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials in the URLs crimeflow is given (database DSNs, presigned
# or token-bearing endpoints).
SECRET_PARAMETERS = frozenset(
    {"password", "pass", "pwd", "secret", "token", "access_token", "api_key", "apikey", "key"}
)


def mask_url(url: str) -> str:
    """`url` with its password (or lone userinfo token) and credential parameters masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        # Not a URL we can take apart: show nothing of it that could be a secret.
        return MASK if "@" in url else url
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(name.lower() in SECRET_PARAMETERS for name, _ in pairs)
    if "@" not in parts.netloc and not secret_query:
        return url  # untouched: urlunsplit would also drop `sqlite:////`'s empty authority
    netloc = parts.netloc
    if "@" in netloc:
        user = parts.username or ""
        bracketed = f"[{host}]" if host and ":" in host else host or ""
        where = f"{bracketed}{f':{port}' if port is not None else ''}"
        # `user:password@` keeps the user; a bare `token@` is a credential itself.
        who = f"{user}:{MASK}" if parts.password is not None else MASK
        netloc = f"{who}@{where}"
    query = urlencode(
        [(name, MASK if name.lower() in SECRET_PARAMETERS else value) for name, value in pairs],
        safe="*",
    )
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))
