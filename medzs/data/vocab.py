"""ECG condition vocabularies: SNOMED CT, SCP-ECG (PTB-XL), CPSC2018 classes and PhysioNet/CinC abbreviations.

The table ``medzs/data/vocab/snomed_scp_cpsc.csv`` has one row per condition and the columns

- ``snomed_ct``: SNOMED CT concept id (the 133 concepts of the PhysioNet/CinC 2021 ``dx_mapping`` tables, plus
  164854000 *electrocardiogram normal*);
- ``name``: the condition's name (CinC 2021 ``dx_name``, or the PTB-XL ``scp_statements.csv`` description);
- ``cinc``: the CinC 2020/2021 abbreviation (e.g. ``AF``, ``IAVB``); ``cinc_scored``: 1 when scored in 2021;
- ``scp_ecg``: the SCP-ECG statement code used by PTB-XL (e.g. ``AFIB``, ``1AVB``);
- ``cpsc2018``: the CPSC2018 class (``Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE``);
- ``note``: where a mapping is only the nearest concept, or where the challenges treat codes as equivalent.

A code may appear on several rows when vocabularies split a concept differently (SCP-ECG ``CLBBB`` is both
SNOMED CT 733534002 *complete LBBB* and 164909002 *LBBB*, which CinC 2021 scores as one class);
:func:`map_codes` then returns every equivalent code, in table order.

Codes are always matched **exactly** (case-sensitive, whole code): ``AFIB`` never yields the CinC code ``AF`` by
substring, and the SCP-ECG code ``AMI`` (anterior MI) is not the CinC ``AMI`` (acute MI) -- the system decides.

Sources: PhysioNet/Computing in Cardiology Challenge 2021 (Reyna et al., CinC 2021) ``dx_mapping_scored.csv`` and
``dx_mapping_unscored.csv``; PTB-XL ``scp_statements.csv`` (Wagner et al., Sci Data 7:154, 2020);
CPSC2018 (Liu et al., J Med Imaging Health Inform 8:1368, 2018).
"""

from __future__ import annotations

import ast
import csv
import functools
import logging
import re
from collections.abc import Iterable
from pathlib import Path

from medzs.errors import RecordError

logger = logging.getLogger(__name__)

#: Path of the mapping table shipped with medzs.
TABLE_PATH = Path(__file__).resolve().parent / "vocab" / "snomed_scp_cpsc.csv"

#: Code systems (column names of the table).
SYSTEMS: tuple[str, ...] = ("snomed_ct", "scp_ecg", "cpsc2018", "cinc")

_ALIASES = {
    "snomed": "snomed_ct",
    "sct": "snomed_ct",
    "snomed_ct": "snomed_ct",
    "scp": "scp_ecg",
    "scp_ecg": "scp_ecg",
    "scp-ecg": "scp_ecg",
    "ptbxl": "scp_ecg",
    "cpsc": "cpsc2018",
    "cpsc2018": "cpsc2018",
    "cinc": "cinc",
    "cinc2020": "cinc",
    "cinc2021": "cinc",
}

#: Official CPSC2018 class numbers (``REFERENCE.csv``) -> class names.
CPSC2018_CLASSES: dict[int, str] = {
    1: "Normal",
    2: "AF",
    3: "I-AVB",
    4: "LBBB",
    5: "RBBB",
    6: "PAC",
    7: "PVC",
    8: "STD",
    9: "STE",
}

_SPLIT = re.compile(r"[,;|\s]+")
_STRIP = "\"'[](){} \t\r\n"


def _system(name: str) -> str:
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise RecordError(
            f"{TABLE_PATH.name}: code system {name!r} unknown (expected one of {', '.join(SYSTEMS)})"
        )
    return _ALIASES[key]


@functools.lru_cache(maxsize=1)
def load_table() -> tuple[dict[str, str], ...]:
    """The mapping table as a tuple of row dicts (cached; columns as described in the module docstring).

    Returns:
        One dict per row with keys ``snomed_ct, name, cinc, cinc_scored, scp_ecg, cpsc2018, note`` (strings,
        empty where a vocabulary has no such condition).

    Raises:
        RecordError: the table is missing or lacks a column.
    """
    if not TABLE_PATH.is_file():
        raise RecordError(f"{TABLE_PATH}: vocabulary table not found (expected it inside the medzs package)")
    with TABLE_PATH.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in (*SYSTEMS, "name") if c not in (reader.fieldnames or [])]
        if missing:
            raise RecordError(f"{TABLE_PATH}: columns {missing} missing (expected {', '.join((*SYSTEMS, 'name'))})")
        rows = tuple({k: (v or "").strip() for k, v in row.items()} for row in reader)
    return rows


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, list[int]]]:
    idx: dict[str, dict[str, list[int]]] = {s: {} for s in SYSTEMS}
    for i, row in enumerate(load_table()):
        for s in SYSTEMS:
            if row[s]:
                idx[s].setdefault(row[s], []).append(i)
    return idx


def codes(system: str) -> frozenset[str]:
    """All codes of one system in the table (e.g. ``codes("cpsc2018")`` -> the 9 CPSC2018 classes)."""
    return frozenset(_index()[_system(system)])


def parse_dx(text: str | None, system: str | None = None, *, source: str = "dx text") -> list[str]:
    """Split a diagnosis field into codes, matching each code exactly.

    Accepts a CinC header line (``"# Dx: 164889003,426783006"``), a plain list (``"AFIB, SR"``,
    ``"AF;IAVB"``) or a PTB-XL ``scp_codes`` dict literal (``"{'NORM': 100.0, 'SR': 0.0}"`` -> its keys).
    Tokens are separated by commas, semicolons, ``|`` or whitespace; surrounding quotes and brackets are removed;
    nothing else is changed (no case folding, no substring search), so ``"AFIB"`` gives ``["AFIB"]`` only.

    Args:
        text: The field; None or an empty string gives ``[]``.
        system: If given, every token must be an exact code of this system (see :data:`SYSTEMS`).
        source: What the text came from, for error messages (e.g. a header path).

    Returns:
        Codes in order of first appearance, without duplicates.

    Raises:
        RecordError: ``system`` is unknown, or a token is not a code of ``system``.
    """
    if text is None:
        return []
    s = str(text).strip()
    if s.startswith("#"):
        s = s[1:].strip()
    s = re.sub(r"^dx\s*:", "", s, flags=re.IGNORECASE).strip()
    if not s or s.lower() == "nan":
        return []
    tokens: list[str]
    if s.startswith("{") and s.endswith("}"):
        try:
            parsed = ast.literal_eval(s)
        except (ValueError, SyntaxError) as exc:
            raise RecordError(f"{source}: malformed code dict {s[:60]!r} (expected e.g. {{'NORM': 100.0}})") from exc
        if not isinstance(parsed, dict):
            raise RecordError(f"{source}: expected a dict of codes, got {type(parsed).__name__}")
        tokens = [str(k).strip() for k in parsed]
    else:
        tokens = [t.strip(_STRIP) for t in _SPLIT.split(s)]
    out: list[str] = []
    for t in tokens:
        if t and t not in out:
            out.append(t)
    if system is not None:
        sysname = _system(system)
        known = _index()[sysname]
        bad = [t for t in out if t not in known]
        if bad:
            raise RecordError(
                f"{source}: {sysname} code(s) {bad} unknown (expected exact codes of {TABLE_PATH.name}, "
                f"e.g. {sorted(known)[:4]})"
            )
    return out


def map_codes(
    codes_in: Iterable[str] | str,
    from_system: str,
    to_system: str,
    *,
    unknown: str = "raise",
) -> list[str]:
    """Translate codes between vocabularies by exact lookup in the mapping table.

    Args:
        codes_in: Codes of ``from_system`` (a single string is one code).
        from_system: One of :data:`SYSTEMS` (aliases ``snomed``, ``scp``, ``cpsc`` accepted).
        to_system: One of :data:`SYSTEMS`.
        unknown: What to do with a code that ``from_system`` does not have: ``"raise"`` (RecordError),
            ``"skip"`` (drop it, logged at debug level) or ``"keep"`` (pass it through unchanged).

    Returns:
        The equivalent codes of ``to_system``, in input order then table order, without duplicates. A known code
        without an equivalent contributes nothing (e.g. SCP-ECG ``NDT`` has no SNOMED CT row).

    Raises:
        RecordError: unknown system, unknown ``unknown`` policy, or an unknown code with ``unknown="raise"``.
    """
    src, dst = _system(from_system), _system(to_system)
    if unknown not in ("raise", "skip", "keep"):
        raise RecordError(f"map_codes: unknown={unknown!r} (expected 'raise', 'skip' or 'keep')")
    if isinstance(codes_in, str):
        codes_in = [codes_in]
    rows = load_table()
    idx = _index()[src]
    out: list[str] = []
    for code in codes_in:
        c = str(code).strip()
        hits = idx.get(c)
        if hits is None:
            if unknown == "raise":
                raise RecordError(
                    f"{TABLE_PATH.name}: {src} code {c!r} unknown (expected an exact {src} code of the table)"
                )
            if unknown == "keep" and c not in out:
                out.append(c)
            else:
                logger.debug("map_codes: %s code %r not in the table; skipped", src, c)
            continue
        for i in hits:
            v = rows[i][dst]
            if v and v not in out:
                out.append(v)
    return out


def code_name(code: str, system: str) -> str:
    """The condition name of an exact code (first matching row), e.g. ``code_name("AF", "cinc")``.

    Raises:
        RecordError: unknown system or code.
    """
    sysname = _system(system)
    hits = _index()[sysname].get(str(code).strip())
    if not hits:
        raise RecordError(f"{TABLE_PATH.name}: {sysname} code {code!r} unknown (expected an exact {sysname} code)")
    return load_table()[hits[0]]["name"]
