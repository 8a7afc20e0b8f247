"""Group-disjoint splits of the imaging datasets (patient / source group), fixed by a hash of the group id.

A record's group is the unit that never straddles two splits:

- Kermany chest radiographs (Kermany et al., Cell 172:1122, 2018, doi:10.1016/j.cell.2018.02.010): the person id
  carried by the file name (``person1000_bacteria_2931.jpeg`` -> ``person1000``; ``IM-0115-0001.jpeg`` ->
  ``IM-0115``; ``NORMAL2-IM-1427-0001.jpeg`` -> ``NORMAL2-IM-1427``), and files with byte-identical content are
  merged into one group (the mirror holds 30 groups of exact duplicates; see :func:`merge_duplicate_groups`).
- UCSD COVID-CT slices (Yang et al., arXiv:2003.13865): the ``source_group`` column of ``labels.csv`` (the paper or
  patient a slice comes from).

The held-out part is chosen by :func:`heldout_part`: ``sha256(group)`` mod 1000 below ``fraction * 1000``. It does
not depend on the labels, the file order or a random seed, so every adapter, trainer and pipeline that calls it
gets the same records in ``"test"``. Training code must only use ``"train"``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence

#: Fraction of groups held out (``"test"``) in the imaging datasets.
HELDOUT_FRACTION = 0.2
#: Salt of the hash, so that the held-out part is not the same as some other hash split of the same ids.
HELDOUT_SALT = "medzs-heldout-v1"

_PERSON = re.compile(r"^(person\d+)_", re.IGNORECASE)
_IM = re.compile(r"^((?:[A-Za-z0-9]+-)?IM-\d+)-\d+", re.IGNORECASE)


def kermany_person_id(file_name: str) -> str:
    """Person id carried by a Kermany chest-radiograph file name.

    Args:
        file_name: Base name or relative path, e.g. ``"PNEUMONIA/person1000_bacteria_2931.jpeg"``.

    Returns:
        ``"person1000"``, ``"IM-0115"`` or ``"NORMAL2-IM-1427"``; the file stem when no id pattern matches
        (then the file is its own group).
    """
    name = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    for pat in (_PERSON, _IM):
        m = pat.match(name)
        if m:
            return m.group(1)
    return name.rsplit(".", 1)[0]


def merge_duplicate_groups(groups: Sequence[str], digests: Sequence[str]) -> list[str]:
    """Merge the groups of records whose content digests are equal (union-find), so duplicates share a split.

    Args:
        groups: Group id of each record.
        digests: Content digest (e.g. sha256 of the file bytes) of each record.

    Returns:
        The merged group id of each record: the smallest original group id of its connected component.
    """
    parent: dict[str, str] = {g: g for g in groups}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first: dict[str, str] = {}
    for g, d in zip(groups, digests):
        if d in first:
            a, b = find(first[d]), find(g)
            if a != b:
                lo, hi = sorted((a, b))
                parent[hi] = lo
        else:
            first[d] = g
    return [find(g) for g in groups]


def heldout_part(group: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Whether a group belongs to the held-out (``"test"``) part: a fixed hash of its id, not of its labels."""
    h = int(hashlib.sha256(f"{HELDOUT_SALT}:{group}".encode()).hexdigest()[:8], 16) % 1000
    return h < int(round(fraction * 1000))


def split_groups(groups: Iterable[str], fraction: float = HELDOUT_FRACTION) -> dict[str, str]:
    """``{group: "train" | "test"}`` for each distinct group."""
    return {g: ("test" if heldout_part(g, fraction) else "train") for g in set(groups)}


def group_kfold(groups: Sequence[str], k: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Group-disjoint ``k``-fold indices (for cross-validation inside the training part).

    Groups are dealt to folds by a seeded hash of their id, so a group never straddles two folds.

    Returns:
        ``[(train_indices, validation_indices), ...]``, one pair per fold.
    """
    fold_of = {g: int(hashlib.sha256(f"cv{seed}:{g}".encode()).hexdigest()[:8], 16) % k for g in set(groups)}
    out = []
    for f in range(k):
        va = [i for i, g in enumerate(groups) if fold_of[g] == f]
        tr = [i for i, g in enumerate(groups) if fold_of[g] != f]
        out.append((tr, va))
    return out


def kermany_groups(paths: Sequence[str], digests: Mapping[str, str] | None = None) -> list[str]:
    """Group of each Kermany file: its person id, merged across byte-identical files when ``digests`` is given.

    Args:
        paths: Relative paths as in ``labels.csv`` (``NORMAL/IM-0115-0001.jpeg``).
        digests: ``{relative path: sha256}`` (e.g. from the mirror's ``MANIFEST.json``), or None.
    """
    groups = [kermany_person_id(p) for p in paths]
    if digests:
        groups = merge_duplicate_groups(groups, [digests.get(p, p) for p in paths])
    return groups
