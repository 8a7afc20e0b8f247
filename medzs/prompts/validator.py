"""Grounding validator: keep an LLM-written descriptor only when the passages it cites support it.

Each descriptor (a :class:`~medzs.prompts.types.Prompt` with the ids of the passages it rests on) is checked,
in this order, against the *cited* passages only; the first failing check drops it with a reason:

1. **citations**: it cites at least one passage, and only passages that were given to the writer (the bare
   condition name, citing nothing, is always kept);
2. **chatter**: no assistant chatter ("Here are ...", "Sure", "As an AI ...", "I cannot ...", "Note:",
   a trailing colon, mentions of JSON/passages/the knowledge base);
3. **numbers and units**: every number in the descriptor appears in a cited passage (digits, or a number word
   such as "two"/"second"), with the same unit when both give one (``ms``, ``s``, ``mV``, ``mm``, ``bpm``,
   ``%``, degrees, ``Hz``, years; spelled-out units are normalised), and not with the opposite comparison
   (descriptor "QRS < 120 ms" against passage "QRS of 120 ms or more"). An invented "QRS > 130 ms" where the
   passage says 120 ms is dropped. ``12-lead`` and lead names (``V1``, ``aVL``) are not numbers;
4. **lexical support**: at least :attr:`GroundingValidator.min_lexical` of the descriptor's content words
   (lower-cased, light stemming, stop words and the condition name's own words removed) occur in the cited
   passages;
5. **embedding support**: cosine similarity between the descriptor and its best cited passage (the whole
   passage, each of its sentences, or each name of a synonyms passage), all embedded with the bundled
   all-MiniLM-L6-v2 (:func:`medzs.knowledge.embedding.embed_texts`), is at least
   :attr:`GroundingValidator.min_cosine`.

Thresholds (defaults ``min_lexical=0.5``, ``min_cosine=0.5``), measured on the 215 entries of ``knowledge/``:
every grounded-writer prompt (text taken verbatim from its passage) passes both, with cosine >= 0.92 for
definition and criterion prompts; descriptors checked against a criterion of a *different* entry have median
cosine 0.18 (95th percentile 0.47); 30 % of them are stopped by the number or lexical checks and 6 of 1150
pass every check. The descriptors the local Qwen2.5 1.5B model wrote for ``ptbxl-super`` and that were kept
score 0.59-1.0 (cosine) and 0.5-1.0 (lexical). ``tests/test_validator.py`` checks the grounded prompts of the
superclasses and every sixth ECG entry. The numbers check is the strictest: an LLM that cites the wrong passage
for a correct number (a frequent error of small models) loses that descriptor.

The validator is deterministic (no sampling; the embedding model runs in inference mode) and its settings
enter the writer's ``template_hash`` (:attr:`GroundingValidator.config_hash`), so changing a threshold
invalidates cached prompts. Each call is recorded in :attr:`GroundingValidator.log` (kept descriptors with
their scores, dropped ones with the reason); :func:`write_validator_log` stores it in ``validator/`` next to
the prompt cache (:func:`validator_log_path`).

Example:
    >>> v = GroundingValidator()  # doctest: +SKIP
    >>> kept, dropped = v.validate("complete left bundle branch block",
    ...                            [Prompt("QRS duration above 130 ms", ("ecg.scp.CLBBB#criterion-0",))],
    ...                            passages)  # doctest: +SKIP
    >>> dropped[0]["reason"]  # doctest: +SKIP
    "number 130 ms is not in the cited passages (they give: 120 ms)"
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medzs.prompts.types import Prompt, check_passages, passages_hash

logger = logging.getLogger(__name__)

__all__ = [
    "GroundingValidator",
    "Quantity",
    "VALIDATOR_LOG_FORMAT",
    "content_words",
    "extract_quantities",
    "is_chatter",
    "read_validator_log",
    "validator_log_path",
    "write_validator_log",
]

#: Bump when the checks change (enters :attr:`GroundingValidator.config_hash`).
VALIDATOR_VERSION = "1"
VALIDATOR_LOG_FORMAT = "medzs-validator-log"

_CHATTER_START = re.compile(
    r"^\s*(?:here(?:'s| (?:are|is))|sure\b|certainly\b|of course\b|okay\b|ok\b|absolutely\b|great\b|"
    r"below (?:are|is)|the following\b|as requested|as an ai\b|as a (?:language model|large language model|"
    r"medical ai|clinical assistant)|i (?:am|'m|can|cannot|can't|have|hope|will|would)\b|let me\b|"
    r"note\b\s*:|please\b|in summary\b|to summarize\b|hope this\b)",
    re.IGNORECASE,
)
_CHATTER_ANY = re.compile(
    r"\b(?:as an ai|language model|i cannot|i can't|i'm sorry|i am sorry|knowledge[- ]base|"
    r"the (?:given |provided |above )?passages?|passage ids?|json|let me know|hope (?:this|that) helps)\b",
    re.IGNORECASE,
)

# Units, normalised. Longest alternatives first inside the regex.
_UNIT_ALIASES: dict[str, str] = {
    "ms": "ms", "msec": "ms", "millisecond": "ms", "milliseconds": "ms",
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "mv": "mV", "millivolt": "mV", "millivolts": "mV",
    "µv": "uV", "uv": "uV", "microvolt": "uV", "microvolts": "uV",
    "mm": "mm", "millimetre": "mm", "millimetres": "mm", "millimeter": "mm", "millimeters": "mm",
    "bpm": "bpm", "beats per minute": "bpm", "beats/min": "bpm", "/min": "bpm", "per minute": "bpm",
    "beats per min": "bpm", "%": "%", "percent": "%", "per cent": "%",
    "°": "deg", "deg": "deg", "degree": "deg", "degrees": "deg",
    "hz": "Hz", "hertz": "Hz", "year": "years", "years": "years", "yr": "years", "yrs": "years",
    "min": "min", "minute": "min", "minutes": "min", "h": "h", "hour": "h", "hours": "h",
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNIT_ALIASES, key=len, reverse=True))
_NUM = r"[-+−–]?\d+(?:\.\d+)?"
# A number (or a range "a to b", "a-b", "a and b") optionally followed by a unit. Not part of a word
# (lead names V1, aVL; "12-lead"), not a list index.
_QUANT = re.compile(
    rf"(?<![A-Za-z0-9.])(?P<a>{_NUM})(?!\d|\.\d)(?P<ord>st|nd|rd|th)?"
    rf"(?:\s*(?:to|-|–|and)\s*(?P<b>{_NUM})(?!\d|\.\d))?"
    rf"(?:\s*(?P<unit>{_UNIT_RE})(?![A-Za-z]))?"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# "12-lead ECG", "15-lead", "18 leads": the recording, not a criterion.
_LEAD_COUNT = re.compile(r"(?<![\d.])(?:12|15|18)\s*-?\s*leads?\b", re.IGNORECASE)
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "first": 1, "second": 2, "third": 3, "fourth": 4,
    "fifth": 5, "sixth": 6, "single": 1, "half": 0.5, "twice": 2, "double": 2, "hundred": 100,
}
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_ABOVE = re.compile(
    r"(?:>=|≥|>|\bmore than|\bgreater than|\blonger than|\bwider than|\btaller than|\bdeeper than|\bover|"
    r"\babove|\bexceed(?:s|ing)?|\bat least|\bbeyond|\bhigher than|\bfaster than|\bminimum of)\s*$",
    re.IGNORECASE,
)
_BELOW = re.compile(
    r"(?:<=|≤|<|\bless than|\bfewer than|\bshorter than|\bnarrower than|\bsmaller than|\bunder|\bbelow|"
    r"\bat most|\blower than|\bslower than|\bup to|\bmaximum of|\bno more than)\s*$",
    re.IGNORECASE,
)
_ABOVE_AFTER = re.compile(r"^\s*(?:or (?:more|longer|greater|above|wider|higher|over|faster)|\+|and (?:above|over))\b",
                          re.IGNORECASE)
_BELOW_AFTER = re.compile(r"^\s*(?:or (?:less|shorter|fewer|below|narrower|lower|under|slower))\b", re.IGNORECASE)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_STOP = frozenset("""
a about above after again against all also an and any are as at be been being below between both but by can
could did do does doing during each either few for from further had has have having here how if in into is it
its itself may might more most much must no nor not of off on once only or other otherwise our out over own per
same should so some such than that the their them then there these they this those through thus to too under
until up upon very was were what when where whether which while who whom why will with within without would
typically typical usually usual often commonly common generally frequently characteristic characteristically
characterized characterised feature features featuring finding findings sign signs seen see shown show shows
showing appear appears appearing present presence presents indicate indicates indicating indicative suggest
suggests suggesting suggestive associated consistent pattern patterns display displays displaying demonstrate
demonstrates evident evidence noted observed manifest manifests manifested look looks like ecg ecgs
electrocardiogram electrocardiographic electrocardiography tracing recording patient patients lead leads
12 twelve condition conditions
""".split())


def _num(text: str) -> float:
    return float(text.replace("−", "-").replace("–", "-").replace("+", ""))


@dataclass(frozen=True)
class Quantity:
    """A number found in text.

    Attributes:
        value: The number (sign kept: ``-45`` degrees).
        unit: Normalised unit (``"ms"``, ``"mV"``, ``"bpm"``, ``"deg"``...), or None.
        direction: ``"above"``, ``"below"`` or None: the comparison the text attaches to the number.
        text: The matched text.
    """

    value: float
    unit: str | None
    direction: str | None
    text: str

    def show(self) -> str:
        """``"120 ms"``-style rendering."""
        v = f"{self.value:g}"
        return f"{v} {self.unit}" if self.unit else v


def _direction(before: str, after: str) -> str | None:
    if _ABOVE_AFTER.match(after) or _ABOVE.search(before):
        return "above"
    if _BELOW_AFTER.match(after) or _BELOW.search(before):
        return "below"
    return None


def extract_quantities(text: str, *, number_words: bool = False) -> list[Quantity]:
    """Numbers in ``text`` with their units and comparison direction.

    Ranges (``"110 to 119 ms"``, ``"0.15-0.25 mV"``, ``"-45 and -90 degrees"``) give both ends the unit.
    Lead names (``V1``), ``12-lead`` and digits inside words are not numbers. Ordinals (``2nd``) are.

    Args:
        text: Prose.
        number_words: Also return spelled-out numbers (``"two"``, ``"second"``) without unit (used for
            passages, so that a descriptor's ``2`` can rest on a passage's ``two``).

    Returns:
        The quantities in text order.
    """
    text = _LEAD_COUNT.sub(lambda m: " " * len(m.group(0)), str(text))
    out: list[Quantity] = []
    for m in _QUANT.finditer(text):
        raw_unit = m.group("unit")
        unit = _UNIT_ALIASES.get(raw_unit.lower()) if raw_unit and not m.group("ord") else None
        before, after = text[max(0, m.start() - 20):m.start()], text[m.end():m.end() + 16]
        if m.group("b") is not None:
            # a range: each end keeps the unit; no direction ("between a and b")
            out.append(Quantity(_num(m.group("a")), unit, None, m.group(0)))
            out.append(Quantity(_num(m.group("b")), unit, None, m.group(0)))
        else:
            out.append(Quantity(_num(m.group("a")), unit, _direction(before, after), m.group(0)))
    if number_words:
        for m in _NUMBER_WORD_RE.finditer(text):
            out.append(Quantity(float(_NUMBER_WORDS[m.group(1).lower()]), None, None, m.group(0)))
    return out


def is_chatter(text: str) -> bool:
    """True when ``text`` is assistant chatter rather than a descriptor (see the module docstring)."""
    t = " ".join(str(text).split())
    return bool(not t or _CHATTER_START.match(t) or _CHATTER_ANY.search(t) or t.endswith(":"))


def _stem(word: str) -> str:
    """A light English stemmer: plural and -ing/-ed endings (``waves``/``wave``, ``notched``/``notch``)."""
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")) and len(w) > 4:
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")) and len(w) > 3:
        return w[:-1]
    if w.endswith("ing") and len(w) > 5:
        return w[:-3]
    if w.endswith("ed") and len(w) > 4:
        return w[:-2]
    return w


def content_words(text: str) -> set[str]:
    """Stemmed content words of ``text`` (stop words and generic descriptor filler removed)."""
    return {_stem(t) for t in _TOKEN.findall(str(text).lower()) if t not in _STOP and not t.isdigit()}


def _passage_units(text: str, field: str = "") -> list[str]:
    """What a descriptor is compared with: the whole passage and, for longer passages, each sentence (with the
    ``"<name>:"`` lead kept so that the sentence stays about the condition); for a synonyms passage, each name."""
    from medzs.prompts.grounded import split_sentences, split_synonyms

    if field == "synonyms":
        return [" ".join(str(text).split()), *split_synonyms(text)]

    text = " ".join(str(text).split())
    lead, sep, body = text.partition(": ")
    lead = f"{lead}: " if sep and len(lead.split()) <= 8 else ""
    sentences = split_sentences(body if lead else text)
    units = [text]
    if len(sentences) > 1:
        units += [lead + s for s in sentences]
    return units


class GroundingValidator:
    """Check descriptors against the passages they cite (see the module docstring for the checks).

    Args:
        min_lexical: Minimum fraction of the descriptor's content words found in the cited passages.
        min_cosine: Minimum cosine similarity (all-MiniLM-L6-v2) to the best cited passage.
        check_numbers: Run the numbers-and-units check.
        embed: ``embed(texts) -> (n, d)`` L2-normalised array; default
            :func:`medzs.knowledge.embedding.embed_texts` (the bundled all-MiniLM-L6-v2, offline).

    Raises:
        ValueError: a threshold outside ``[0, 1]`` (lexical) or ``[-1, 1]`` (cosine).
    """

    def __init__(self, min_lexical: float = 0.5, min_cosine: float = 0.5, *, check_numbers: bool = True,
                 embed: Callable[[list[str]], Any] | None = None):
        if not 0.0 <= min_lexical <= 1.0:
            raise ValueError(f"min_lexical: expected a value in [0, 1], got {min_lexical}")
        if not -1.0 <= min_cosine <= 1.0:
            raise ValueError(f"min_cosine: expected a value in [-1, 1], got {min_cosine}")
        self.min_lexical = float(min_lexical)
        self.min_cosine = float(min_cosine)
        self.check_numbers = bool(check_numbers)
        self._embed = embed
        #: One record per :meth:`validate` call, keyed by entry id (or class name): ``{"checks": [...]}``.
        self.log: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ identity
    @property
    def config(self) -> dict[str, Any]:
        """The settings that determine the verdicts."""
        return {"validator": "grounding", "version": VALIDATOR_VERSION, "min_lexical": self.min_lexical,
                "min_cosine": self.min_cosine, "check_numbers": self.check_numbers,
                "embedding_model": "all-MiniLM-L6-v2" if self._embed is None else
                getattr(self._embed, "__name__", type(self._embed).__name__)}

    @property
    def config_hash(self) -> str:
        """SHA-256 (hex) of :attr:`config`."""
        blob = json.dumps(self.config, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _embed_texts(self, texts: list[str]) -> Any:
        import numpy as np

        if self._embed is not None:
            vecs = np.asarray(self._embed(texts), dtype=np.float32)
        else:
            from medzs.knowledge.embedding import embed_texts

            vecs = embed_texts(texts)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.clip(norms, 1e-12, None)

    # ------------------------------------------------------------------ checks
    def _numbers(self, text: str, cited: Sequence[Any]) -> str | None:
        q_desc = extract_quantities(text)
        if not q_desc:
            return None
        q_pass = [q for p in cited for q in extract_quantities(p.text, number_words=True)]

        def given() -> str:
            shown = sorted({q.show() for q in q_pass if q.text[:1].isdigit() or q.text[:1] in "-+−–"})
            return ", ".join(shown) if shown else "no numbers"

        for q in q_desc:
            same_value = [p for p in q_pass if abs(p.value - q.value) <= 1e-9 * max(1.0, abs(q.value))]
            if not same_value and q.value < 0:  # "-45 degrees" vs "45 degrees": signs are written both ways
                same_value = [p for p in q_pass if abs(p.value + q.value) <= 1e-9 * max(1.0, abs(q.value))
                              and p.unit == "deg"]
            if not same_value:
                return f"number {q.show()} is not in the cited passages (they give: {given()})"
            if q.unit is not None:
                units = {p.unit for p in same_value}
                if q.unit not in units and None not in units:
                    return (f"unit mismatch: {q.show()} but the cited passages give "
                            f"{', '.join(sorted(p.show() for p in same_value))}")
                same_value = [p for p in same_value if p.unit in (q.unit, None)]
            if q.direction is not None:
                dirs = {p.direction for p in same_value}
                if dirs and None not in dirs and q.direction not in dirs:
                    return (f"comparison reversed: descriptor says {q.direction} {q.show()}, the cited passages "
                            f"say {'/'.join(sorted(d for d in dirs if d))} {q.show()}")
        return None

    @staticmethod
    def _lexical(text: str, cited: Sequence[Any], name_words: set[str]) -> float:
        words = content_words(text)
        core = words - name_words
        if core:
            words = core
        if not words:
            return 0.0
        support = set().union(*(content_words(p.text) for p in cited)) if cited else set()
        return len(words & support) / len(words)

    def validate(
        self, class_name: str, prompts: Sequence[Prompt], passages: Sequence[Any], *, entry_id: str | None = None
    ) -> tuple[list[Prompt], list[dict]]:
        """Keep the supported descriptors, drop the others with a reason.

        Args:
            class_name: Condition name (its own words do not count as support; the bare name is kept).
            prompts: Descriptors to check.
            passages: The passages the writer was given.
            entry_id: Key of the :attr:`log` record (default: ``class_name``).

        Returns:
            ``(kept, dropped)``: kept prompts in input order; ``dropped`` items are
            ``{"text", "passage_ids", "reason", "stage": "validator", "scores": {...}}``.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
        """
        passages = check_passages(passages)
        by_id = {p.id: p for p in passages}
        name = " ".join(str(class_name).split())
        name_words = content_words(name)
        kept: list[Prompt] = []
        dropped: list[dict] = []
        verdicts: list[dict] = []
        pending: list[tuple[int, Prompt, list[Any], float]] = []
        for i, pr in enumerate(prompts):
            text = " ".join(pr.text.split())
            cited = [by_id[j] for j in pr.passage_ids if j in by_id]
            reason = None
            lexical = None
            if not pr.passage_ids:
                if text.lower() == name.lower():
                    verdicts.append({"i": i, "ok": True})
                    continue
                reason = "cites no passage"
            elif len(cited) != len(pr.passage_ids):
                reason = f"unknown passage id(s): {sorted(set(pr.passage_ids) - set(by_id))}"
            elif is_chatter(text):
                reason = "chatter, not a descriptor"
            elif self.check_numbers and (num := self._numbers(text, cited)):
                reason = num
            else:
                lexical = self._lexical(text, cited, name_words)
                if lexical < self.min_lexical:
                    reason = (f"lexical support {lexical:.2f} < {self.min_lexical:g} (content words not in the "
                              "cited passages)")
            if reason is not None:
                verdicts.append({"i": i, "ok": False, "reason": reason,
                                 "scores": {} if lexical is None else {"lexical": round(lexical, 3)}})
            else:
                pending.append((i, pr, cited, lexical or 0.0))
                verdicts.append({"i": i, "ok": None})
        if pending:  # one embedding call for all descriptors and their cited passages
            texts = [pr.text for _, pr, _, _ in pending]
            units = {p.id: _passage_units(p.text, str(getattr(p, "field", ""))) for _, _, cited, _ in pending
                     for p in cited}
            ptexts = sorted({u for us in units.values() for u in us})
            vecs = self._embed_texts(texts + ptexts)
            dvec, pvec = vecs[: len(texts)], {t: vecs[len(texts) + k] for k, t in enumerate(ptexts)}
            for k, (i, _pr, cited, lexical) in enumerate(pending):
                cos = max(float(dvec[k] @ pvec[u]) for p in cited for u in units[p.id])
                scores = {"lexical": round(lexical, 3), "cosine": round(cos, 3)}
                v = next(v for v in verdicts if v["i"] == i)
                if cos < self.min_cosine:
                    v.update(ok=False, scores=scores,
                             reason=f"embedding support {cos:.2f} < {self.min_cosine:g} (cosine to the best "
                                    "cited passage)")
                else:
                    v.update(ok=True, scores=scores)
        record_kept, record_dropped = [], []
        for v in verdicts:
            pr = prompts[v["i"]]
            item = {"text": pr.text, "passage_ids": list(pr.passage_ids)}
            if v["ok"]:
                kept.append(pr)
                record_kept.append({**item, "scores": v.get("scores", {})})
            else:
                d = {**item, "reason": v["reason"], "stage": "validator", "scores": v.get("scores", {})}
                dropped.append(d)
                record_dropped.append(d)
                logger.info("validator: '%s': dropped %r (%s)", name, pr.text, v["reason"])
        key = entry_id or name
        rec = self.log.setdefault(key, {"class_name": name, "checks": []})
        rec["passages_hash"] = passages_hash(passages)
        rec["checks"].append({"kept": record_kept, "dropped": record_dropped})
        return kept, dropped


# ---------------------------------------------------------------------------------------------------- the log
def read_validator_log(path: str | Path) -> dict[str, Any]:
    """Read a validator log file (empty structure when the file does not exist).

    Raises:
        ValueError: the file is not a validator log (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        return {"format": VALIDATOR_LOG_FORMAT, "version": 1, "classes": {}}
    data = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != VALIDATOR_LOG_FORMAT:
        raise ValueError(f"{p}: field 'format': expected {VALIDATOR_LOG_FORMAT!r}")
    return data


def validator_log_path(cache_path: str | Path) -> Path:
    """Where the validator log of a prompt cache lives: ``validator/<name>.json`` in the folder of a
    ``<name>.json`` cache file (a subfolder, so that globbing ``*.json`` next to the caches finds caches only),
    ``validator.json`` inside a cache folder."""
    p = Path(cache_path)
    if p.suffix.lower() == ".json":
        return p.parent / "validator" / p.name
    return p / "validator.json"


def write_validator_log(path: str | Path, validator: GroundingValidator, *, model: str | None = None,
                        writer_template_hash: str | None = None,
                        class_codes: Mapping[str, str] | None = None) -> Path | None:
    """Merge :attr:`GroundingValidator.log` into a JSON log file (sorted, no timestamps: diff-friendly).

    Entries of classes validated in this run replace their previous entries; others are kept.

    Args:
        path: The log file, e.g. ``knowledge/prompts/validator/ptbxl-super.llm-<model>.json``.
        validator: The validator whose :attr:`~GroundingValidator.log` is written.
        model: LLM name, recorded in the file.
        writer_template_hash: The writer's template hash, recorded in the file.
        class_codes: ``{entry_id: class_code}`` to label the entries.

    Returns:
        The path, or None when the validator has nothing logged (nothing is written).
    """
    if not validator.log:
        return None
    from medzs.prompts.cache import _atomic_write

    p = Path(path)
    data = read_validator_log(p)
    data.update(validator=validator.config, model=model, writer_template_hash=writer_template_hash)
    for key, rec in validator.log.items():
        entry = dict(rec)
        if class_codes and key in class_codes:
            entry["class_code"] = class_codes[key]
        data["classes"][key] = entry
    _atomic_write(p, json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
    logger.info("validator log: %s (%d classes)", p, len(data["classes"]))
    return p
