"""The per-language alert texts, read from ``alertd/texts/<language>.yaml``.

The words live in YAML rather than in Python so a translator or a
native-speaker reviewer can change them without reading code;
alertd/messages.py composes them into messages. The files are read once, at
import, through importlib.resources so an installed wheel finds them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it: it reads the five catalogs
# several times faster than the pure-Python one, and every process imports them.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Catalog = dict[str, Any]


def catalog_directory() -> Traversable:
    """Where the shipped catalogs are: the ``texts`` folder inside the alertd package."""
    return resources.files("alertd") / "texts"


def load_catalog(language: str, directory: Traversable | Path | None = None) -> Catalog:
    """One language's texts; a missing or malformed file raises, naming the file."""
    folder = directory if directory is not None else catalog_directory()
    name = f"{language}.yaml"
    try:
        data = yaml.load((folder / name).read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ValueError(f"text catalog {name} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"text catalog {name} must be a mapping of text keys, not {type(data).__name__}")
    return data


def load_catalogs(languages: Iterable[str], directory: Traversable | Path | None = None) -> dict[str, Catalog]:
    """Every language's texts, keyed by language code; ``directory`` defaults to the shipped catalogs."""
    return {language: load_catalog(language, directory) for language in languages}
