"""Folders of generated data (INR sets, CNN zoos) that commands build in pieces and resume.

A folder holds ``config.json`` (the settings it is made with) and one file per piece, each
written to a temporary file and renamed, so a piece is either whole or absent."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import torch


def claim_folder(folder: Path, config: Dict[str, Any], what: str) -> None:
    """Create ``folder`` with ``config.json``, or check that the one there equals ``config``.

    Raises ``ValueError`` naming both settings when the folder was made with others."""
    path = folder / "config.json"
    config = json.loads(json.dumps(config))
    if path.exists():
        found = json.loads(path.read_text())
        if found != config:
            raise ValueError(f"{folder} holds {what} made with {found}, not {config}; "
                             "choose another folder or delete this one")
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)


def save_piece(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
