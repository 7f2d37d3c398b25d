"""The per-language text catalogs (alertd/texts/*.yaml) stay in step with Japanese, and edits to them show.

A translator edits these files without reading Python, so the checks a
reviewer cannot do by eye live here: every key the code looks up exists in
every language, and every placeholder the code fills in is still there.
"""

from __future__ import annotations

import shutil
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alertd import messages
from alertd.models import Alert, MsgType, Status
from alertd.text_catalogs import catalog_directory, load_catalog, load_catalogs

REFERENCE = "ja"
OTHERS = [lang for lang in messages.LANGUAGES if lang != REFERENCE]

# Keys a language may have or lack; the code checks for them before use.
OPTIONAL_KEYS: dict[tuple[Any, ...], set[str]] = {
    # English says "the whole of Joso" in one phrase; other languages say the
    # municipality (muni_part) and "全域" separately (_places, _muni_part).
    ("whole_area_named",): {"muni"},
    # やさしい日本語 explains a hard hazard word where it first appears (reason_text).
    ("reasons_explained",): set(),
    # hazard_texts.area_name words JMA's area names where a language has these, else shows them as JMA wrote them.
    ("prefectures",): set(),
    ("area_parts",): {"pref"},
    ("area_other",): {"pref", "rest"},
    # hazard_texts._place romanises JMA's names where a language lists them ("Ontakesan (御嶽山)").
    ("place_names",): set(),
    ("place_name",): {"name", "kanji"},
    # messages._national adds JMA's per-region arrival and height (in JMA's words) only where a language reads them.
    ("tsunami_regions",): {"lines"},
}

# Keys whose texts may use one of several placeholder sets, because the code
# passes every name in the set to format() (see the call named in each comment).
ALTERNATIVE_PLACEHOLDERS: dict[tuple[Any, ...], list[set[str]]] = {
    # _places: "A、Bほか3地区" counts the districts not shown ({more}); zh and
    # やさしい日本語 say "A、B等5个地区", the count of all ({total}).
    ("more_places",): [{"names", "more"}, {"names", "total"}],
    # _national: English starts the title with the hazard, capitalised ({Reason}).
    ("warning", "title"): [{"reason"}, {"Reason"}],
    # _national: "A flooding warning has been issued" names the hazard rather
    # than repeating the title ("Flooding warning").
    ("warning", "body"): [{"title"}, {"reason"}],
}

# fallback_note has one note per language the reader's language falls back to
# (messages._FALLBACK_CHAIN), so its keys differ by language on purpose; they are checked against the chain.
PER_LANGUAGE_KEYS = {("fallback_note",)}


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (key path, value) pair below ``node``, mappings included as their own entries."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            if (*path, key) not in PER_LANGUAGE_KEYS:
                yield from _leaves(value, (*path, key))


def _paths(catalog: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {path for path, _ in _leaves(catalog) if not any(path[: len(k)] == k for k in OPTIONAL_KEYS)}


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


@pytest.fixture(scope="module")
def catalogs() -> dict[str, dict[str, Any]]:
    return load_catalogs(messages.LANGUAGES)


def test_every_language_has_a_catalog_of_the_same_shape(catalogs: dict[str, dict[str, Any]]) -> None:
    """Each file loads as a mapping, and where Japanese has a group of texts, so does every language."""
    for lang in messages.LANGUAGES:
        assert (catalog_directory() / f"{lang}.yaml").is_file(), f"alertd/texts/{lang}.yaml is missing"
        catalog = catalogs[lang]
        assert isinstance(catalog, dict)
        for path, value in _leaves(catalog):
            if isinstance(value, dict):
                continue
            assert isinstance(value, str), f"{lang}.yaml {'.'.join(map(str, path))}: a text must be a string, got {value!r}"
    shape = {lang: {path: isinstance(v, dict) for path, v in _leaves(c)} for lang, c in catalogs.items()}
    for lang in OTHERS:
        for path, is_group in shape[REFERENCE].items():
            if path in shape[lang]:
                assert shape[lang][path] == is_group, f"{lang}.yaml {'.'.join(map(str, path))}: nesting differs from ja.yaml"


@pytest.mark.parametrize("lang", OTHERS)
def test_every_key_exists_in_every_language_and_no_other(catalogs: dict[str, dict[str, Any]], lang: str) -> None:
    reference, other = _paths(catalogs[REFERENCE]), _paths(catalogs[lang])
    missing = sorted(".".join(map(str, p)) for p in reference - other)
    extra = sorted(".".join(map(str, p)) for p in other - reference)
    assert not missing, f"{lang}.yaml lacks texts that ja.yaml has: {missing}"
    assert not extra, f"{lang}.yaml has texts ja.yaml does not (misspelt key?): {extra}"


@pytest.mark.parametrize("lang", messages.LANGUAGES)
def test_fallback_notes_cover_exactly_the_languages_fallen_back_to(
    catalogs: dict[str, dict[str, Any]], lang: str
) -> None:
    notes = catalogs[lang]["fallback_note"]
    assert set(notes) == set(messages._FALLBACK_CHAIN[lang])
    assert all(isinstance(n, str) and n and not _placeholders(n) for n in notes.values())


@pytest.mark.parametrize("lang", OTHERS)
def test_every_placeholder_matches_the_japanese_text(catalogs: dict[str, dict[str, Any]], lang: str) -> None:
    reference = dict(_leaves(catalogs[REFERENCE]))
    wrong = []
    for path, text in _leaves(catalogs[lang]):
        if not isinstance(text, str) or path not in reference:
            continue
        try:
            found = _placeholders(text)
        except ValueError as exc:  # a lone "{" or "}"
            wrong.append(f"{'.'.join(map(str, path))}: {exc}")
            continue
        allowed = ALTERNATIVE_PLACEHOLDERS.get(path, [_placeholders(reference[path])])
        if found not in allowed:
            wrong.append(f"{'.'.join(map(str, path))}: has {sorted(found)}, needs one of {[sorted(a) for a in allowed]}")
    assert not wrong, f"{lang}.yaml placeholders differ from ja.yaml: {wrong}"


@pytest.mark.parametrize("lang", messages.LANGUAGES)
def test_optional_texts_keep_their_own_placeholders(catalogs: dict[str, dict[str, Any]], lang: str) -> None:
    catalog = catalogs[lang]
    if "whole_area_named" in catalog:
        assert _placeholders(catalog["whole_area_named"]) == OPTIONAL_KEYS[("whole_area_named",)]
    explained = catalog.get("reasons_explained", {})
    # An explanation of a hazard the catalogs do not know would never be shown.
    assert set(explained) <= set(catalogs[REFERENCE]["reasons"])
    assert all(isinstance(t, str) and t and not _placeholders(t) for t in explained.values())


def test_the_rules_encoded_above_are_still_needed(catalogs: dict[str, dict[str, Any]]) -> None:
    """Each exception must still be used by some language; a stale one would hide a real mismatch."""
    for (key,) in OPTIONAL_KEYS:
        assert any(key in c for c in catalogs.values()), key
    for path, options in ALTERNATIVE_PLACEHOLDERS.items():
        used = set()
        for catalog in catalogs.values():
            node: Any = catalog
            for part in path:
                node = node[part]
            used.add(frozenset(_placeholders(node)))
        assert len(used) > 1 and used <= {frozenset(o) for o in options}, path


def test_a_translators_edit_is_what_residents_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a YAML line, and nothing else, changes the Korean message a resident sees."""
    for lang in messages.LANGUAGES:
        shutil.copy(str(catalog_directory() / f"{lang}.yaml"), tmp_path / f"{lang}.yaml")
    ko = tmp_path / "ko.yaml"
    text = ko.read_text(encoding="utf-8")
    edits = {
        "  4: 위험한 장소에 있는 분은 모두 대피하십시오.\n": "  4: 위험한 곳에 있는 모든 분은 지금 바로 대피하십시오.\n",
        "  洪水: 홍수\n": "  洪水: 큰물\n",
    }
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    ko.write_text(text, encoding="utf-8")
    alert = Alert(
        identifier="joso-2026-0001", sender="desk@city.joso.ibaraki.jp", sent=datetime(2026, 6, 1, 9, 0, tzinfo=UTC),
        status=Status.ACTUAL, msg_type=MsgType.ALERT, id="a-1", origin="desk", kind="evacuation", level=4,
        action="issue", reason="洪水", municipality=None, districts=[],
    )  # fmt: skip

    before = messages.message(alert, "ko", ["若宮戸"]).body
    monkeypatch.setattr(messages, "_PHRASES", load_catalogs(messages.LANGUAGES, tmp_path))
    after = messages.message(alert, "ko", ["若宮戸"]).body

    assert "위험한 장소에 있는 분은 모두 대피하십시오." in before and "홍수" in before
    assert "위험한 곳에 있는 모든 분은 지금 바로 대피하십시오." in after
    assert "큰물 위험으로" in after and "홍수" not in after


def test_a_broken_catalog_names_its_file(tmp_path: Path) -> None:
    """A translator's stray quote must fail loudly at start-up, naming the file, not garble alerts."""
    (tmp_path / "ko.yaml").write_text("sep: ' '\nlist_sep: ', \nmore_places: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ko\.yaml"):
        load_catalog("ko", tmp_path)
    (tmp_path / "en.yaml").write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"en\.yaml"):
        load_catalog("en", tmp_path)
