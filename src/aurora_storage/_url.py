"""The storage URL: an immutable, parsed ``scheme://...`` that hides its secrets when
printed. Public as :class:`aurora_storage.URL` (and ``aurora_storage.config.URL``)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import InvalidURLError

__all__ = ["SCHEME_RE", "URL", "hide_text"]

SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "api_key", "apikey")

SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")

#: Characters the URL parser would drop from a URL's text without a word.
_DROPPED = {
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    "#": "'#' (it starts a fragment)",
}


@dataclass(frozen=True, slots=True)
class URL:
    """An immutable, parsed storage URL: ``scheme://[user[:password]@][host[:port]]/path?opt=v``.

    A comma-separated server list (``nats://h1:4222,h2:4222/bucket``) is kept verbatim
    in :attr:`host` (with :attr:`port` ``None``) for the backend to split.

    Printing it (``str``/``repr``) hides passwords and secret-looking options; use
    :meth:`render` with ``hide_secrets=False`` for the real text. Change it with the
    copy-on-write :meth:`set`, :meth:`with_options` and :meth:`without_options`.

    Paths: ``rocksdb:///abs/path`` is absolute; ``rocksdb:relative/path`` (no slashes) and
    ``rocksdb://./relative/path`` are relative to the current directory.
    """

    scheme: str
    path: str = ""
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | URL) -> URL:
        """Parse ``text`` into a URL.

        Raises:
            InvalidURLError: no scheme, a malformed port or query, a repeated option, or
                a tab, line break or '#' not percent-encoded (the parser would drop it).
        """
        if isinstance(text, URL):
            return text
        if not isinstance(text, str):
            raise InvalidURLError(f"a URL must be a str, got {type(text).__name__}")
        if ":" not in text:
            raise InvalidURLError(
                f"{hide_text(text)!r} is not a URL: expected scheme://..., e.g. 'memory://', "
                "'rocksdb:///var/data/events' or 'lmdb:///var/data/projections'"
            )
        scheme = text.split(":", 1)[0]
        if not SCHEME_RE.match(scheme):
            raise InvalidURLError(f"{hide_text(text)!r} has an invalid scheme {scheme!r}")
        # urlsplit drops tabs and line breaks anywhere in the text, and a '#...'
        # fragment: a store path holding one would silently name another store.
        for char, name in _DROPPED.items():
            if char in text:
                raise InvalidURLError(
                    f"{hide_text(text)!r} holds {name}, which a URL cannot carry as it is "
                    f"(it would be dropped); write it percent-encoded as "
                    f"{quote(char, safe='')} if the name really holds one"
                )
        try:
            parts = urlsplit(text)
            hosts = parts.netloc.rpartition("@")[2]
            # A server list (nats://h1:4222,h2:4222/...) stays verbatim in ``host``; the
            # backend splits it. Everything else must have a valid port.
            port = None if "," in hosts else parts.port
        except ValueError as exc:
            raise InvalidURLError(f"malformed URL {hide_text(text)!r}: {exc}") from exc
        netloc_host = hosts if "," in hosts else parts.hostname
        # Percent-escapes must spell UTF-8: unquote's default replaces any other bytes
        # with U+FFFD, so s%FF and s%FE would name one store (and a password or option
        # value would change unseen).
        try:
            path = unquote(parts.path, errors="strict")
        except UnicodeDecodeError as exc:
            raise InvalidURLError(
                f"the path of {hide_text(text)!r} holds a percent-escape that is not UTF-8 "
                f"({exc.object[exc.start : exc.end]!r}): a store path is UTF-8 text; "
                "percent-encode the UTF-8 bytes of the name"
            ) from exc
        try:
            username = unquote(parts.username, errors="strict") if parts.username else None
            password = (
                unquote(parts.password, errors="strict") if parts.password is not None else None
            )
        except UnicodeDecodeError:
            # (Not chained, and no bytes shown: they are part of a secret.)
            raise InvalidURLError(
                f"the user or password of {hide_text(text)!r} holds a percent-escape that "
                "is not UTF-8; credentials in a URL are UTF-8 text"
            ) from None
        if parts.netloc in (".", "..", "~"):
            # rocksdb://./data/events: a relative path written with slashes.
            path = parts.netloc + path
            netloc_host = None
        try:
            pairs = parse_qsl(
                parts.query,
                keep_blank_values=True,
                strict_parsing=bool(parts.query),
                errors="strict",
            )
        except UnicodeDecodeError as exc:
            raise InvalidURLError(
                f"the query string of {hide_text(text)!r} holds a percent-escape that is not "
                f"UTF-8 ({exc.object[exc.start : exc.end]!r}); option names and values are "
                "UTF-8 text"
            ) from exc
        except ValueError as exc:
            raise InvalidURLError(f"malformed query string in {hide_text(text)!r}: {exc}") from exc
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidURLError(f"option {name!r} is given twice in {hide_text(text)!r}")
            seen.add(name)
        return cls(
            scheme=parts.scheme.lower(),
            path=path,
            host=netloc_host if netloc_host else None,
            port=port,
            username=username,
            password=password,
            query=tuple(pairs),
        )

    @property
    def options(self) -> dict[str, str]:
        """The query options as a new dict."""
        return dict(self.query)

    def set(self, **changes: Any) -> URL:
        """A copy with the given attributes replaced."""
        return dataclasses.replace(self, **changes)

    def with_options(self, **options: Any) -> URL:
        """A copy with these options added or replaced (values are turned into text)."""
        merged = dict(self.query)
        for name, value in options.items():
            merged[name] = _option_text(value)
        return dataclasses.replace(self, query=tuple(merged.items()))

    def without_options(self, *names: str) -> URL:
        """A copy without the named options."""
        return dataclasses.replace(self, query=tuple(p for p in self.query if p[0] not in names))

    def render(self, *, hide_secrets: bool = True) -> str:
        """The URL as text; passwords and secret options are ``***`` unless asked."""
        out = self.scheme + ":"
        netloc = ""
        if self.username is not None:
            # A user part without a password may be a token (NATS reads
            # ``nats://TOKEN@host`` so): hidden as a password is.
            lone = self.password is None and hide_secrets
            netloc = "***" if lone else quote(self.username, safe="")
            if self.password is not None:
                netloc += ":" + ("***" if hide_secrets else quote(self.password, safe=""))
            netloc += "@"
        if self.host:
            # An IPv6 literal needs its brackets back, or the port would be ambiguous.
            # (A comma-separated server list is written back as it was given.)
            netloc += f"[{self.host}]" if ":" in self.host and "," not in self.host else self.host
        if self.port is not None:
            netloc += f":{self.port}"
        path = quote(self.path, safe="/~.-_")
        if netloc or self.path.startswith("/") or not self.path:
            out += "//" + netloc + path
        else:
            out += path
        if self.query:
            out += "?" + "&".join(
                f"{quote(k, safe='')}="
                + ("***" if hide_secrets and _is_secret(k) else quote(v, safe=""))
                for k, v in self.query
            )
        return out

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"URL({self.render()!r})"


def _is_secret(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in SECRET_WORDS)


def hide_text(text: str) -> str:
    """Best-effort hiding of secrets in an unparsed URL string (for error messages)."""
    text = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", text)
    text = re.sub(r"//[^/:@]+@", "//***@", text)  # a lone user part: maybe a token
    return re.sub(
        r"([?&][^=&]*(?:" + "|".join(SECRET_WORDS) + r")[^=&]*=)[^&]*",
        r"\1***",
        text,
        flags=re.IGNORECASE,
    )


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
