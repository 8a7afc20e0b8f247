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


def load_state_file(path: Any) -> dict[str, Any]:
    """A checkpoint's state dict: ``torch.load`` (weights only) or safetensors (``.safetensors``); a
    ``{"state_dict": ...}`` wrapper is unwrapped and DataParallel ``module.`` prefixes are removed."""
    from pathlib import Path

    import torch

    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    return {k.removeprefix("module."): v for k, v in state.items()}


def strict_load_release(module: Any, state: dict[str, Any], name: str, path: Any, optional: tuple[str, ...] = ()
                        ) -> None:
    """:func:`strict_load` of a released state dict in fp32, ignoring only the documented ``optional`` keys
    (e.g. the ``position_ids`` buffer that some transformers versions save) when the module has no such key."""
    own = module.state_dict()
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()
             if not (k in optional and k not in own)}
    strict_load(module, state, name, path)
