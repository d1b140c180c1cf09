"""Reading checkpoints safely and assigning them into modules with every shape checked."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..errors import CheckpointError


def first_present(folder: Path, candidates: Sequence[tuple[str, str]]) -> tuple[Path, str] | None:
    """The first of ``candidates`` ((file name, format), in order of preference) that ``folder``
    holds, as (path, format); None when it holds none."""
    for name, fmt in candidates:
        if (folder / name).is_file():
            return folder / name, fmt
    return None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint file -> {name: tensor}. safetensors is memory-mapped; ``.bin``/``.pt`` files are
    read with ``torch.load(weights_only=True)`` only, so pickled code is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"refusing or unable to read {path} as a weights-only torch checkpoint: {exc}"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return dict(obj)


def assign_weights(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str = "checkpoint",
                   assign: bool = False) -> None:
    """Copy ``state`` (already renamed to ``module``'s names) into ``module``; every key must be
    present and every shape must match, else :class:`CheckpointError` lists what is wrong.

    ``assign=True`` makes the checkpoint tensors *become* the parameters (no copy; the module may
    live on the ``meta`` device, which skips random init). Dtypes must then already match."""
    own = module.state_dict(keep_vars=assign)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own.keys() & state.keys()
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or bad_shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if bad_shapes:
            parts.append(f"shape mismatches ({len(bad_shapes)}): {'; '.join(bad_shapes[:20])}")
        raise CheckpointError(f"{source} does not fit the model: " + " | ".join(parts))
    if assign:
        cast = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in state.items()}
        module.load_state_dict(cast, strict=True, assign=True)
        return
    with torch.no_grad():
        for name, tensor in own.items():
            tensor.copy_(state[name].to(tensor.dtype))
