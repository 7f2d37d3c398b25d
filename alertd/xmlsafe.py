"""The one place alertd parses XML it did not write itself.

Alerts arrive from peers, municipal desks and the JMA feed; any of them can
carry XML built to hurt the parser: a DTD that expands entities a billion
times, an external entity that reads ``file:///etc/passwd`` or calls out to
``http://`` (XXE), or bytes in an encoding other than the one declared.
CAP and JMA XML never need a DTD, so the rule here is simple: a document
with a DOCTYPE is refused before libxml2 ever reads its internal subset, and
the parser is configured so that even if something slipped past that check
it would not load a DTD, resolve an entity or open a network connection.

Every refusal is an :mod:`alertd.errors` exception whose ``detail`` is a
sentence a desk operator can act on.
"""

from __future__ import annotations

import codecs
import os
import re
import threading

from lxml import etree

from alertd.errors import HostileInput, MalformedInput, TooLarge

__all__ = ["DEFAULT_MAX_BYTES", "load_schema", "parse_xml"]

DEFAULT_MAX_BYTES = 1_000_000

# Encodings a sender may declare. Python's codec is what decides whether the
# bytes really are in that encoding, so anything exotic (UTF-7, which is a
# known filter-evasion trick, or the EBCDIC families) is refused outright.
_ALLOWED_CODECS = frozenset(
    {
        "utf-8",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "ascii",
        "latin-1",
        "cp932",
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "euc_jp",
        "euc_jis_2004",
        "euc_jisx0213",
        "iso2022_jp",
        "iso2022_jp_1",
        "iso2022_jp_2",
        "iso2022_jp_2004",
        "iso2022_jp_3",
        "iso2022_jp_ext",
    }
)

# Japanese senders label CP932 text (with ①, ㈱ and friends) as "Shift_JIS";
# decoding it with the strict JIS codec would reject real municipal text.
_ENCODING_ALIASES = {
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "ms_kanji": "cp932",
    "csshiftjis": "cp932",
}

_XML_DECL = re.compile(rb"^<\?xml[ \t\r\n][^>]*?\?>")
_ENCODING_PSEUDO_ATTR = re.compile(r"""encoding\s*=\s*(["'])([^"']*)\1""")
_ENCODING_PSEUDO_ATTR_B = re.compile(rb"""encoding\s*=\s*(["'])([^"']*)\1""")
_XML_DECL_TEXT = re.compile(r"^<\?xml[ \t\r\n][^>]*?\?>")


class _ParserCache(threading.local):
    """lxml parsers must not be shared between threads; one per thread is cheap."""

    parser: etree.XMLParser | None = None


_parsers = _ParserCache()


def _hardened_parser() -> etree.XMLParser:
    if _parsers.parser is None:
        _parsers.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            dtd_validation=False,
            load_dtd=False,
            huge_tree=False,  # keeps libxml2's depth and text-size limits on
            attribute_defaults=False,
            collect_ids=False,
            remove_blank_text=False,
        )
    return _parsers.parser


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "message") -> etree._Element:
    """Parse untrusted XML and return its root element.

    ``what`` names the document in error messages ("CAP message", "JMA
    entry") so the operator knows which input was refused.

    Raises :class:`~alertd.errors.TooLarge` over ``max_bytes``,
    :class:`~alertd.errors.HostileInput` for any DOCTYPE/DTD, entity
    declaration or external reference, and
    :class:`~alertd.errors.MalformedInput` for empty, truncated or
    not-well-formed documents and for bytes that are not in the declared
    encoding.
    """
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"parse_xml takes bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise TooLarge(
            f"The {what} is {len(data):,} bytes, more than the {max_bytes:,} bytes alertd accepts. "
            "Split it into smaller messages or remove attachments embedded in it.",
            size=len(data),
            max_bytes=max_bytes,
        )
    if not data.strip():
        raise MalformedInput(f"The {what} is empty: no XML was received.")

    text = _decode(data, what)
    _refuse_doctype(text, what)
    root = _parse(_as_utf8(data, text), what)

    # Belt and braces: the prolog scan above should make this unreachable.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _doctype_error(what)
    return root


def load_schema(path: str | os.PathLike[str]) -> etree.XMLSchema:
    """Load an XML Schema from a trusted local file (never from the network)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(os.fspath(path), parser))


# --- encoding -------------------------------------------------------------------


def _declared_encoding(data: bytes) -> tuple[str | None, str | None]:
    """(codec to decode with, name as the sender wrote it)."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16"
    if data.startswith(b"<\x00?\x00"):
        return "utf-16-le", "UTF-16"
    if data.startswith(b"\x00<\x00?"):
        return "utf-16-be", "UTF-16"
    decl = _XML_DECL.match(data)
    if decl:
        m = _ENCODING_PSEUDO_ATTR_B.search(decl.group(0))
        if m:
            name = m.group(2).decode("ascii", "replace").strip()
            return name, name
    return None, None


def _decode(data: bytes, what: str) -> str:
    codec, declared = _declared_encoding(data)
    if codec is None:
        codec, declared = "utf-8", None
    if codec not in ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"):
        codec = _ENCODING_ALIASES.get(codec.lower(), codec)
        try:
            canonical = codecs.lookup(codec).name
        except LookupError:
            canonical = ""
        if canonical not in _ALLOWED_CODECS:
            raise MalformedInput(
                f"The {what} says it is written in the encoding '{declared}', which alertd does not read. "
                "Save it as UTF-8 and send it again.",
                encoding=declared,
            )
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        said = f"it says it is {declared}" if declared else "it names no encoding, so it must be UTF-8"
        raise MalformedInput(
            f"The {what} could not be read: {said}, but the bytes at line {line} are not valid in "
            "that encoding. It was probably saved in another encoding (for example Shift_JIS text "
            "sent as UTF-8). Save it as UTF-8 and send it again.",
            line=line,
            encoding=declared or "UTF-8",
        ) from None
    except UnicodeError as exc:  # e.g. a UTF-16 stream with an odd byte count
        raise MalformedInput(
            f"The {what} could not be read in its declared encoding ({declared or 'UTF-8'}): {exc}. "
            "Save it as UTF-8 and send it again."
        ) from None


def _as_utf8(data: bytes, text: str) -> bytes:
    """Bytes for libxml2, re-encoded so it agrees with the codec that checked them.

    Re-encoding keeps every line where it was, so libxml2's line numbers in
    later error messages still point at the sender's document.
    """
    if not data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec, _ = _declared_encoding(data)
        if codec is None or codecs.lookup(_ENCODING_ALIASES.get(codec.lower(), codec)).name == "utf-8":
            return data
    text = text.lstrip("\ufeff")
    decl = _XML_DECL_TEXT.match(text)
    if decl:
        fixed = _ENCODING_PSEUDO_ATTR.sub('encoding="UTF-8"', decl.group(0))
        text = fixed + text[decl.end() :]
    return text.encode("utf-8")


# --- DOCTYPE --------------------------------------------------------------------


def _doctype_error(what: str) -> HostileInput:
    return HostileInput(
        f"The {what} contains a DOCTYPE (DTD) declaration, which alertd never accepts because it can "
        "define entities that read local files, call other servers or expand without limit. "
        "Remove the <!DOCTYPE ...> part and send it again; CAP and JMA XML do not need it."
    )


def _refuse_doctype(text: str, what: str) -> None:
    """Walk the prolog (before the root element) and refuse any markup declaration.

    A DOCTYPE, and with it every entity declaration, can only appear in the
    prolog, so checking there rejects billion-laughs, XXE and parameter
    entities before libxml2 reads them, without false alarms for text such
    as "<!DOCTYPE" quoted inside a CDATA section of the alert body.
    """
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n\ufeff":
            i += 1
            continue
        if text.startswith("<?", i):
            end = text.find("?>", i + 2)
            if end < 0:
                return  # unterminated: libxml2 reports it as broken XML
            i = end + 2
            continue
        if text.startswith("<!--", i):
            end = text.find("-->", i + 4)
            if end < 0:
                return
            i = end + 3
            continue
        if text.startswith("<!", i):
            raise _doctype_error(what)
        return  # the root element (or junk that libxml2 will refuse)


# --- parsing --------------------------------------------------------------------


def _parse(data: bytes, what: str) -> etree._Element:
    try:
        root = etree.fromstring(data, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, data, what) from None
    if root is None:
        raise MalformedInput(f"The {what} has no root element.")
    return root


def _syntax_error(exc: etree.XMLSyntaxError, data: bytes, what: str) -> MalformedInput:
    line, column = exc.position if exc.position else (exc.lineno or 0, 0)
    reason = (exc.msg or str(exc)).strip()
    # libxml2 appends its own ", line N, column M"; ours already says where.
    reason = re.sub(r",? line \d+, column \d+$", "", reason)
    if re.search(r"\bentity\b", reason, re.IGNORECASE):
        # Not hostile by itself (without a DTD nothing can define it), just
        # HTML habits such as &nbsp; that XML does not know.
        return MalformedInput(
            f"The {what} uses an unknown XML entity at line {line} ({reason}). Write the character "
            "itself; XML only knows &amp; &lt; &gt; &quot; &apos; and numeric references like &#12354;.",
            line=line,
            column=column,
        )
    last_line = data.count(b"\n") + 1
    truncated = "premature end" in reason.lower() or "end of data" in reason.lower() or line >= last_line
    what_happened = "cut off or broken" if truncated else "broken"
    advice = (
        "Check that the whole message was sent and that every tag is closed."
        if truncated
        else "Check the tags and special characters there (write & as &amp; and < as &lt;)."
    )
    return MalformedInput(
        f"The {what} is {what_happened} at line {line}, column {column}: {reason}. {advice}",
        line=line,
        column=column,
    )
