"""The one secret masker: every URI, message and log line passes through it.

A MongoDB URI carries secrets in two places: the password of its user info
and the values of secret-bearing options (``tlsCertificateKeyFilePassword``,
``proxyPassword``, ``authMechanismProperties`` with ``AWS_SESSION_TOKEN:``).
:func:`mask_uri` finds them the way the driver does, with pymongo's own URI
pieces (``parse_userinfo``, ``split_options``; see
https://www.mongodb.com/docs/manual/reference/connection-string/), so what the
driver reads as a password is what gets hidden, whatever characters it holds
(``#``, ``?``, spaces). The host list, database and harmless options stay
readable.

A URI the driver could not read the same way (an unescaped ``@`` in the user
name, a ``/`` or ``?`` in the password, an ``@`` after the host part) is
masked conservatively instead: everything between ``://`` and the last ``@``
is hidden, and so is every value of a secret-bearing option.
:func:`mask_text` applies the same to every URI found inside a message, and,
given the URIs in play, replaces their secrets wherever else they appear (a
driver error that quotes a password, say).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote, unquote_plus

from pymongo import common, uri_parser
from pymongo.errors import PyMongoError

__all__ = ["MASK", "is_secret_option", "mask_text", "mask_uri", "secrets_of"]

#: What a secret is replaced with.
MASK: Final = "***"

# Options whose values are secrets: the URI options spec's sensitive options
# (pymongo's list), authMechanismProperties (AWS_SESSION_TOKEN:...), and,
# conservatively, anything named like a password, secret or token.
_SENSITIVE: Final = frozenset(getattr(common, "SENSITIVE_OPTIONS_FOR_REPR", ())) | {
    "proxyusername",
    "proxypassword",
    "tlscertificatekeyfilepassword",
    "authmechanismproperties",
}
_KNOWN_OPTIONS: Final = frozenset(common.URI_OPTIONS_VALIDATOR_MAP)
_SECRET_WORDS: Final = ("password", "passwd", "secret", "token", "passphrase", "credential")

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# key=value inside an option string or a message. The value runs to whitespace
# or to the next separator that starts another key=value: an unescaped "&" in
# a secret ("pw=one&two") keeps "two" inside the value.
_OPTION: Final = re.compile(
    r"(?P<key>[A-Za-z0-9_%.\-]+)(?P<eq>\s*=\s*)"
    r"(?P<value>(?:[^&;\s]+|[&;](?![A-Za-z0-9_%.\-]*\s*=))*)"
)
# The same, but only where an option starts inside a URI's option string.
_OPTION_IN_URI: Final = re.compile(r"(?:^|(?<=[?&;]))" + _OPTION.pattern)
# AWS_SESSION_TOKEN:<token> (an authMechanismProperties entry) anywhere in text.
_SESSION_TOKEN: Final = re.compile(r"(?i)(?P<key>AWS_SESSION_TOKEN\s*[:=]\s*)(?P<value>[^,&;\s]*)")
# Shorter secrets are not replaced as plain text: they would mangle words.
_MIN_LITERAL: Final = 4


def is_secret_option(name: str) -> bool:
    """Tell whether the URI option ``name`` (any case, percent-escaped or not) holds a secret."""
    key = unquote(name).strip().lower()
    return key in _SENSITIVE or any(word in key for word in _SECRET_WORDS)


def mask_uri(uri: str) -> str:
    """Return ``uri`` with its password and secret option values replaced by ``***``.

    User names, hosts, the database and other options stay. When the URI
    cannot be split the way the driver splits it, everything between ``://``
    and the last ``@`` is masked too (see the module docstring).
    """
    scheme = _SCHEME.match(uri)
    start = scheme.end() if scheme else 0  # "user:pw@host" without a scheme is a URI too
    exact = _mask_exact(uri, start)
    return exact if exact is not None else _mask_conservatively(uri, start)


def mask_text(text: str, *uris: str | None) -> str:
    """Mask every URI inside ``text`` and every secret of ``uris`` wherever it appears.

    ``uris`` are the URIs in play (the one being connected to, say): their
    passwords and secret option values are replaced even where a message
    quotes them outside a URI.
    """
    for secret in sorted(secrets_of(*uris), key=len, reverse=True):
        text = text.replace(secret, MASK)
    masked: list[str] = []
    for line in text.splitlines(keepends=True):
        masked.append(_mask_line(line))
    return _SESSION_TOKEN.sub(_hide_value, "".join(masked))


def secrets_of(*uris: str | None) -> set[str]:
    """Return the secrets of ``uris`` as they may appear in text (raw and unescaped)."""
    found: set[str] = set()
    for uri in uris:
        if not uri:
            continue
        for secret in _raw_secrets(uri):
            found.update({secret, unquote(secret), unquote_plus(secret)})
    return {secret for secret in found if len(secret) >= _MIN_LITERAL}


# ------------------------------------------------------------------ internals


def _split(uri: str, start: int) -> tuple[str, str, str, str] | None:
    """Split like pymongo's ``_validate_uri``: (userinfo, hosts, path, options).

    ``path`` keeps its leading ``/`` and ``options`` its ``?``; None when
    there is no user info. The order matters: the driver cuts at the first
    ``?``, then the first ``/``, then the last ``@``.
    """
    rest = uri[start:]
    head, question, options = rest.partition("?")
    host_part, slash, database = head.partition("/")
    if "@" not in host_part:
        return None
    userinfo, _, hosts = host_part.rpartition("@")
    return userinfo, hosts, slash + database, question + options


def _mask_exact(uri: str, start: int) -> str | None:
    """Mask a URI the driver splits unambiguously; None when it does not."""
    head, question, options = uri[start:].partition("?")
    host_part, slash, database = head.partition("/")
    if options and not _options_split(options):
        return None
    shown_options = question + _mask_option_string(options)
    if "@" in database or "@" in options:
        return None  # an "@" after the host part: a password with an unescaped "/" or "?"
    if _mask_hosts(host_part.rpartition("@")[2]) != host_part.rpartition("@")[2]:
        return None  # a "port" that is not a number: perhaps a password without its "@"
    shown_hosts = host_part
    if "@" in host_part:
        userinfo, _, hosts = host_part.rpartition("@")
        try:
            uri_parser.parse_userinfo(userinfo)  # no "@", one ":", escapes well formed
        except (PyMongoError, ValueError):
            return None
        user, colon, _ = userinfo.partition(":")
        shown_hosts = user + (f":{MASK}" if colon else "") + "@" + hosts
    return uri[:start] + shown_hosts + slash + database + shown_options


def _mask_hosts(hosts: str) -> str:
    """Hide each host's "port" that is not a number: a password whose "@" was forgotten.

    ``mongodb://admin:hunter2/db`` reads as host ``admin``, port ``hunter2``.
    """
    shown = []
    for entity in hosts.split(","):
        if entity.startswith("["):
            close = entity.find("]")
            if close < 0:
                literal = re.fullmatch(r"\[[0-9A-Fa-f:.]*(%25[A-Za-z0-9]*)?", entity)
                shown.append(entity if literal else f"[{MASK}")
                continue
            head, rest = entity[: close + 1], entity[close + 1 :]
            port_ok = rest == "" or (rest.startswith(":") and rest[1:].isdigit())
            shown.append(entity if port_ok else f"{head}:{MASK}")
            continue
        name, colon, port = entity.partition(":")
        shown.append(entity if not colon or port.isdigit() else f"{name}:{MASK}")
    return ",".join(shown)


def _options_split(options: str) -> bool:
    """Tell whether pymongo's ``split_options`` can split ``options`` into key=value pairs.

    The same rules (one ``=`` per pair, ``&`` or ``;`` but not both), checked
    here because pymongo's warns on a duplicate option, a warning Python would
    print on stderr.
    """
    if "&" in options and ";" in options:
        return False
    delimiter = "&" if "&" in options else ";"
    return all(pair.count("=") == 1 for pair in options.split(delimiter))


def _mask_option_string(options: str) -> str:
    """Mask the secret values of a URI's option string, split as pymongo splits it."""
    delimiter = "&" if "&" in options else ";"
    return delimiter.join(_shown_option(pair) for pair in options.split(delimiter))


def _shown_option(pair: str) -> str:
    """Show one ``key=value`` piece: a secret's value masked, an unknown piece hidden whole.

    pymongo does not name an unrecognized key, as it "may be credential text"
    (a secret cut in two by an unescaped ``&`` or ``;``); neither does this.
    """
    key, equals, value = pair.partition("=")
    if not pair:
        return pair
    if not equals or key.strip().lower() not in _KNOWN_OPTIONS:
        return MASK
    if is_secret_option(key) and not _already_masked(value):
        return f"{key}={MASK}"
    return pair


def _mask_conservatively(uri: str, start: int) -> str:
    """Mask a URI the driver cannot read unambiguously; hide more rather than less.

    Secret option values go first. Then everything between ``://`` and the
    last ``@`` is hidden. If the host part that follows has a "port" that is
    not a number (``admin:hunter2/db``: a password whose ``@host`` was
    forgotten), everything from that ``:`` on is hidden too. Option pieces that
    are not ``key=value`` are hidden as well.
    """
    # Options first (from the first "?"): a secret value holding an "@" is gone
    # before the last "@" is looked for.
    before, question, options = uri.partition("?")
    text = before + question + _OPTION_IN_URI.sub(_hide_option, options)
    at = text.rfind("@", start)
    head = text[:start] + (MASK + "@" if at >= 0 else "")
    tail = text[at + 1 :] if at >= 0 else text[start:]
    authority = re.split(r"[/?]", tail, maxsplit=1)[0]
    rest = tail[len(authority) :]
    if _mask_hosts(authority) == authority:
        return head + authority + _mask_garbage(rest)
    colon = _first_colon_outside_brackets(authority)
    if colon >= 0:
        return head + authority[: colon + 1] + MASK
    return head + _mask_hosts(authority) + (MASK if rest else "")


def _first_colon_outside_brackets(authority: str) -> int:
    """Return the index of the first ``:`` not inside an IPv6 literal ``[...]``, or -1."""
    depth = 0
    for index, char in enumerate(authority):
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        elif char == ":" and depth == 0:
            return index
    if depth and not re.fullmatch(r"(\[[0-9A-Fa-f:.]*(%25[A-Za-z0-9]*)?\]?,?)*", authority):
        return authority.find("[")  # an unclosed "[" holding more than an address
    return -1


def _mask_garbage(rest: str) -> str:
    """Hide the option pieces of ``rest`` (a path, then ``?options``) that are not key=value."""
    path, question, options = rest.partition("?")
    if not question:
        return rest
    delimiter = "&" if "&" in options else ";"
    return path + question + delimiter.join(_shown_option(p) for p in options.split(delimiter))


def _mask_options(text: str) -> str:
    """Replace the value of every secret-bearing ``key=value`` in ``text``."""
    return _OPTION.sub(_hide_option, text)


def _hide_option(match: re.Match[str]) -> str:
    if not is_secret_option(match["key"]) or _already_masked(match["value"]):
        return match[0]
    return f"{match['key']}{match['eq']}{MASK}"


def _hide_value(match: re.Match[str]) -> str:
    if _already_masked(match["value"]):
        return match[0]
    return f"{match['key']}{MASK}"


def _already_masked(value: str) -> bool:
    """Tell a value that is the mask (perhaps followed by quotes or punctuation)."""
    return value.startswith(MASK) and not value[len(MASK) :].strip("'\"),.:!]}")


def _mask_line(line: str) -> str:
    """Mask each URI of one line of text.

    A URI inside prose ends at the first whitespace, but a password may hold
    a space: when an ``@`` follows on the line before the next URI, the URI
    may run to it, so everything up to the last such ``@`` is hidden.
    """
    starts = [m.start() for m in _SCHEME.finditer(line)]
    if not starts:
        return _mask_options(line)
    pieces = [_mask_options(line[: starts[0]])]
    for begin, end in zip(starts, [*starts[1:], len(line)], strict=True):
        pieces.append(_mask_segment(line[begin:end]))
    return "".join(pieces)


def _mask_segment(segment: str) -> str:
    """Mask a segment of text that starts with a URI and holds no other."""
    token = re.split(r"\s", segment, maxsplit=1)[0]
    tail = segment[len(token) :]
    if "@" in _mask_options(tail):
        scheme = _SCHEME.match(segment)
        assert scheme is not None  # segments start at a scheme
        return _mask_conservatively(segment, scheme.end())
    return mask_uri(token) + _mask_options(tail)


def _raw_secrets(uri: str) -> Iterable[str]:
    """Yield the secret substrings of ``uri``: its password, secret option values.

    For a URI the driver cannot split, the whole user-info region counts as
    secret (and each of its ``:``-separated parts).
    """
    scheme = _SCHEME.match(uri)
    start = scheme.end() if scheme else 0
    for match in _OPTION.finditer(uri[start:].partition("?")[2]):
        if is_secret_option(match["key"]) and match["value"]:
            yield match["value"]
            yield from _session_tokens(match["value"])
    for match in _SESSION_TOKEN.finditer(uri):
        if match["value"]:
            yield match["value"]
    parts = _split(uri, start)
    if parts is not None:
        yield parts[0].partition(":")[2]
    hosts = uri[start:].partition("?")[0].partition("/")[0].rpartition("@")[2]
    for entity in hosts.split(","):
        name, colon, port = entity.partition(":")
        if colon and not name.startswith("[") and not port.isdigit():
            yield port  # "admin:hunter2" with its "@host" forgotten
    if _mask_exact(uri, start) is None:
        at = uri.rfind("@", start)
        if at > start:
            region = uri[start:at]
            yield region
            yield from (piece for piece in region.split(":")[1:])
        tail = uri[at + 1 :] if at >= 0 else uri[start:]
        authority = re.split(r"[/?]", tail, maxsplit=1)[0]
        cut = _first_colon_outside_brackets(authority)
        if cut >= 0 and _mask_hosts(authority) != authority:
            yield tail[cut + 1 :]  # what the conservative mask hides


def _session_tokens(value: str) -> Iterable[str]:
    """Yield the values of ``authMechanismProperties`` entries (``KEY:value,...``)."""
    for entry in unquote(value).split(","):
        name, colon, secret = entry.partition(":")
        if colon and "TOKEN" in name.upper() and secret:
            yield secret
