"""URIs as messages, logs and reports show them: without their secrets.

Below every layer, because sources (``ssh://``, ``http(s)://``) and targets
(``qemu+ssh://``) both name hosts by URI, and neither may ever show a password.
"""

from __future__ import annotations

import re
import urllib.parse

URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def redact(uri: str) -> str:
    """A URI fit for a message: the password of ``user:password@`` and an HTTP query
    (pre-signed URL signatures) replaced by ``…``; never raises."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        m = URI_SCHEME.match(uri)
        return f"{m.group(1)}://…" if m else "…"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}{':…' if ':' in userinfo else ''}@{hostport}"
    query = parts.query
    if query and parts.scheme.lower() in ("http", "https"):
        query = "…"
    # (not urlunsplit: it turns nbd+unix:///export into nbd+unix:/export)
    return f"{parts.scheme}://{netloc}{parts.path}{'?' + query if query else ''}"


def has_password(uri: str) -> bool:
    """Whether ``uri`` carries a ``user:password@``."""
    try:
        return urllib.parse.urlsplit(uri).password is not None
    except ValueError:
        return False


__all__ = ["has_password", "redact"]
