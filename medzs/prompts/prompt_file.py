"""Read a prompt file in MERL's published format: a JSON object mapping each class code to one descriptor string.

MERL's repository publishes its CKEPE prompts as ``zeroshot/CKEPE_prompt.json`` (github.com/cheliu-computation/MERL,
commit 38799b7d): one JSON object, 131 entries, class code (``"AFIB"``, ``"LAO/LAE"``, ``"PRC(S)"``...) -> one string
of comma-separated descriptors, e.g. ``"NST": "non-specific ST changes, non-specific ST segment changes, ..."``.
MERL embeds each string **whole** as one text (lower-cased, ``utils/zeroshot_val.py``), which is what
``split=False`` (the default) returns; ``split=True`` returns the comma-separated descriptors as separate prompts
(their embeddings are then averaged by the scorer, CLIP-style). A value may also be a list of strings (medzs
extension), kept as given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from medzs.errors import SpecError

__all__ = ["read_prompt_file"]


def read_prompt_file(path: str | os.PathLike[str], classes: Sequence[str] | None = None,
                     split: bool = False) -> dict[str, list[str]]:
    """Read ``{class code: "descriptor, descriptor, ..."}`` -> ``{class code: [prompt texts]}``.

    Args:
        path: The JSON file.
        classes: When given, only these classes are returned (in this order), and each must be present.
        split: False: one prompt per class, the whole string (MERL's use); True: one prompt per comma-separated
            descriptor (blank pieces dropped).

    Returns:
        Class code -> non-empty list of prompt texts (file order, or ``classes`` order).

    Raises:
        SpecError: unreadable or non-JSON file, not an object, a value that is not a non-empty string / list of
            strings, or a requested class missing (the message names the file and the class).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"prompts file {p}: cannot be read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"prompts file {p}: not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise SpecError(f"prompts file {p}: expected a JSON object {{class code: descriptor string}}, "
                        f"got {type(data).__name__}")
    out: dict[str, list[str]] = {}
    for code, value in data.items():
        if isinstance(value, str):
            texts = [t.strip() for t in value.split(",")] if split else [value.strip()]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            texts = [v.strip() for v in value]
        else:
            raise SpecError(f"prompts file {p}: class {code!r}: expected a string of comma-separated descriptors, "
                            f"got {type(value).__name__}")
        texts = [t for t in texts if t]
        if not texts:
            raise SpecError(f"prompts file {p}: class {code!r}: empty descriptor string")
        out[str(code)] = texts
    if classes is None:
        return out
    missing = [c for c in classes if c not in out]
    if missing:
        raise SpecError(f"prompts file {p}: class {missing[0]!r} missing (all missing: {missing})")
    return {c: out[c] for c in classes}
