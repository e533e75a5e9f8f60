"""Network source URIs: recognised, parsed and redacted, before anything connects.

Accepted (issue 20):

- ``ssh://[user@]host[:port]/path`` — a disk or an image file on a machine running sshd
  (a rescue medium); key authentication only (agent, ``~/.ssh`` keys or
  ``--ssh-identity``), host keys checked against ``known_hosts``;
- ``nbd://host[:port][/export]`` and ``nbd+unix:///[export]?socket=PATH`` — an existing
  NBD server;
- ``http://…`` and ``https://…`` — an image on a web server or object store (a
  pre-signed URL carries its credentials in the query string).

Credentials never appear in a message, a log line or a report: :attr:`RemoteSpec.display`
is the URI without its password and, for HTTP, without its query string.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from ..errors import UnsupportedFormatError, UsageError
from ..uris import URI_SCHEME, redact

SCHEMES = ("ssh", "nbd", "nbd+unix", "http", "https")


def is_uri(arg: object) -> bool:
    """Whether a source argument is a URI (``scheme://…``) rather than a path."""
    return isinstance(arg, str) and URI_SCHEME.match(arg) is not None


@dataclass(frozen=True)
class RemoteSpec:
    scheme: str
    display: str  # the URI as messages and reports show it: no password, no HTTP query
    host: str = ""
    port: int | None = None
    user: str | None = None
    path: str = ""  # ssh: the remote path; nbd: the export name
    socket: str | None = None  # nbd+unix: the server's socket
    url: str = field(default="", repr=False)  # http(s): the URL without user:password
    password: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Strings that must never be shown (for scrubbing tools' messages)."""
        out = [s for s in (self.password,) if s]
        if self.scheme in ("http", "https"):
            query = urllib.parse.urlsplit(self.url).query
            if query:
                out.append(query)
                out.extend(v for _, v in urllib.parse.parse_qsl(query) if len(v) >= 8)
        return out

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this URI replaced."""
        if self.url and self.url != self.display:
            text = text.replace(self.url, self.display)
        for s in sorted(self.secrets(), key=len, reverse=True):
            text = text.replace(s, "…")
        return text


def parse(uri: str) -> RemoteSpec:
    """Parse a source URI; a malformed or unknown one is a one-line BadInputError."""
    display = redact(uri)
    m = URI_SCHEME.match(uri)
    if m is None:
        raise UsageError(f"{display}: not a URI")
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise UnsupportedFormatError(
            f"{display}: unsupported source URI scheme '{scheme}' (use a file or directory, "
            "or ssh://, nbd://, nbd+unix://, http:// or https://)")
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise UnsupportedFormatError(f"{display}: malformed URI ({exc})") from None
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    host = parts.hostname or ""
    if parts.fragment:
        raise UnsupportedFormatError(f"{display}: a source URI has no #fragment")

    if scheme == "ssh":
        path = urllib.parse.unquote(parts.path)
        if password is not None:
            raise UsageError(f"{display}: passwords in ssh:// URIs are not supported; use a "
                             "key (ssh agent, ~/.ssh, or --ssh-identity)")
        if not host:
            raise UnsupportedFormatError(f"{display}: no host (ssh://[user@]host[:port]/path)")
        if not path or path == "/":
            raise UnsupportedFormatError(
                f"{display}: no path of the disk or image on the host (ssh://host/dev/sda)")
        if parts.query:
            raise UnsupportedFormatError(f"{display}: ssh:// URIs take no ?query")
        return RemoteSpec(scheme, display, host=host, port=port, user=user, path=path)

    if scheme in ("nbd", "nbd+unix"):
        if password is not None or user is not None:
            raise UnsupportedFormatError(f"{display}: NBD URIs take no user or password")
        export = urllib.parse.unquote(parts.path.removeprefix("/"))
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if scheme == "nbd":
            if not host:
                raise UnsupportedFormatError(f"{display}: no host (nbd://host[:port]/export)")
            if query:
                raise UnsupportedFormatError(f"{display}: nbd:// URIs take no ?query here")
            return RemoteSpec(scheme, display, host=host, port=port, path=export)
        if host or port:
            raise UnsupportedFormatError(
                f"{display}: nbd+unix:// takes no host (nbd+unix:///export?socket=PATH)")
        sockets = query.pop("socket", [])
        if len(sockets) != 1 or not sockets[0]:
            raise UnsupportedFormatError(
                f"{display}: give the server's socket once (nbd+unix:///export?socket=PATH)")
        if query:
            raise UnsupportedFormatError(
                f"{display}: unknown URI parameter(s) {', '.join(sorted(query))}")
        return RemoteSpec(scheme, display, path=export, socket=sockets[0])

    # http, https
    if not host:
        raise UnsupportedFormatError(f"{display}: no host")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return RemoteSpec(scheme, display, host=host, port=port, user=user, path=parts.path,
                      url=url, password=password)
