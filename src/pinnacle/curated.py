"""Readers shared by the curated YAML resources (marker sets, protein expectations): a YAML
loader that refuses a key given twice, and the checks of an entry's keys, source and gene lists.
Hand-written: PyYAML keeps the last of two equal keys silently, and the checks are a few lines."""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from pinnacle.errors import InputError

__all__ = ["UniqueKeyLoader", "DuplicateKey", "load_yaml", "gene_list", "resource_entry"]


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (PyYAML keeps the last silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


class DuplicateKey(Exception):
    """Raised by :class:`UniqueKeyLoader`; readers turn it into an :class:`InputError` with the lines.

    Parameters
    ----------
    key
        The repeated key.
    line
        1-based line of the repetition.
    first_line
        1-based line where the key was first given.
    """

    def __init__(self, key, line, first_line):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path, *, what: str, missing_fix: str, duplicate_fix: str):
    """A curated YAML file, each key given once: the one reader of every curated resource
    (markers, protein expectations, signatures, states).

    Parameters
    ----------
    path
        The YAML file.
    what
        What the file is, for the message when it does not exist ("marker file").
    missing_fix
        The fix when it does not exist (names the config key).
    duplicate_fix
        The fix when a key is given twice.

    Raises
    ------
    InputError
        Missing or unreadable file, invalid YAML, or a key repeated in one mapping (with both lines).
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), f"{what} not found.", missing_fix)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=UniqueKeyLoader)  # noqa: S506 (safe loader subclass)
    except DuplicateKey as e:
        raise InputError(f"{path} (line {e.line})", f"key '{e.key}' appears twice (first on line {e.first_line}) "
                         "in the same mapping.", duplicate_fix) from None
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start}).",
                         "save the file as UTF-8.") from None
    except yaml.YAMLError as e:
        raise InputError(str(path), f"not valid YAML: {e}",
                         "fix the YAML syntax (indentation, colons, brackets).") from None


def gene_list(value, where: str, key: str, *, required: bool) -> list[str]:
    """A YAML gene list, checked: symbols (a single string counts as one), none repeated.

    Parameters
    ----------
    value
        The parsed value (None = empty).
    where
        The file and entry, for messages.
    key
        The key holding the list, for messages.
    required
        An empty list is an :class:`InputError` (a set's positive markers).
    """
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(g, str) and g.strip() for g in value):
        raise InputError(where, f"'{key}' must be a list of gene symbols, got {value!r}.",
                         f"write '{key}: [GENE1, GENE2]'.")
    genes = [g.strip() for g in value]
    if required and not genes:
        raise InputError(where, f"'{key}' is empty: a marker set needs at least one positive gene.",
                         f"list the set's marker genes under '{key}:' or remove the set.")
    dup = sorted({g for g in genes if genes.count(g) > 1})
    if dup:
        raise InputError(where, f"'{key}' lists {', '.join(dup)} more than once.", "list each gene once.")
    return genes


def resource_entry(entry, where: str, allowed: set[str], *, resource: str) -> str:
    """Check one entry of a curated YAML resource: a mapping with only ``allowed`` keys and a
    non-empty ``source``; returns the source.

    Parameters
    ----------
    entry
        The parsed entry.
    where
        The file and entry, for messages.
    allowed
        Keys the entry may have.
    resource
        The resource file whose header documents the format, for messages.
    """
    if not isinstance(entry, Mapping):
        raise InputError(where, f"expected a mapping with {sorted(allowed)}, got {type(entry).__name__}.",
                         f"see the format at the top of {resource}.")
    unknown = sorted(set(map(str, entry)) - allowed)
    if unknown:
        raise InputError(where, f"unknown key(s) {', '.join(repr(k) for k in unknown)}.",
                         f"allowed keys here: {', '.join(sorted(allowed))} (check the spelling and indentation).")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise InputError(where, "no 'source' given.",
                         "add 'source: \"Authors, Journal Year\"' (or \"[general knowledge]\") to the entry.")
    return source.strip()
