"""Strict state-dict loading shared by the registry and the encoders' checkpoint-format loaders."""

from __future__ import annotations

from typing import Any

from medzs.errors import SpecError


def strict_load(module: Any, state: dict[str, Any], name: str, path: Any) -> None:
    """Load ``state`` into ``module`` only when keys and shapes match exactly.

    Raises:
        SpecError: missing or unexpected keys, or shape mismatches (the first five of each, with the model name and
            checkpoint path).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    bad = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise SpecError(
            f"model {name}: checkpoint {path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
            f"shape mismatches {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in bad[:5]]}"
        )
    module.load_state_dict(state, strict=True)
