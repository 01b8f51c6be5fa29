"""Saving and loading update-network weights (``torch.load(..., weights_only=True)`` only)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from l2o_graphs.cache import atomic_save
from l2o_graphs.nn import NETS, UpdateNet, build_net
from l2o_graphs.optim.update import all_finite

FORMAT = "l2o_graphs.update_net"
VERSION = 1
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def net_name(net: UpdateNet) -> str:
    """The registry name (``"ng-gnn"``, ...) of a network instance."""
    for name, cls in NETS.items():
        if type(net) is cls:
            return name
    raise ValueError(f"{type(net).__name__} is not a registered update network ({', '.join(NETS)})")


def save_weights(net: UpdateNet, path: Union[str, Path], **metadata: object) -> None:
    """Write ``net``'s name, config and weights (plus JSON-like ``metadata``) to ``path``, through a
    temporary file and a rename (a kill leaves the old file or the new one, never half of one)."""
    blob = {"format": FORMAT, "version": VERSION, "net": net_name(net), "config": dict(net.config),
            "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "metadata": dict(metadata)}
    atomic_save(blob, path)


def load_weights(path: Union[str, Path], expected_net: Optional[str] = None) -> UpdateNet:
    """Rebuild a network from a weights file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a weights file of this package (or not loadable with
            ``weights_only=True``), another net than ``expected_net``, or weights whose shapes do
            not fit the recorded config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - empty, truncated or foreign files fail in many ways
        raise ValueError(f"{path} is not a readable weights file (torch.load with weights_only=True failed: "
                         f"{_first_line(err)})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not an l2o_graphs weights file (expected a dict with format={FORMAT!r})")
    if blob.get("version") != VERSION:
        raise ValueError(f"{path} has weights format version {blob.get('version')}; this package reads {VERSION}")
    name, config, weights = blob.get("net"), blob.get("config"), blob.get("state_dict")
    if name not in NETS:
        raise ValueError(f"{path} names an unknown net {name!r}; this package has {', '.join(NETS)}")
    if expected_net is not None and name != expected_net:
        raise ValueError(f"{path} holds weights of net {name!r}, but net={expected_net!r} was asked for; "
                         f"pass net={name!r} or a file of {expected_net!r}")
    if not isinstance(config, dict) or not isinstance(weights, dict) or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise ValueError(f"{path}: 'config' must be a dict and 'state_dict' a dict of tensors")
    if not all(all_finite(v) for v in weights.values() if v.is_floating_point()):
        raise ValueError(f"{path}: the weights hold NaN or inf")
    # the config is tried with the file's tensors on the meta device first (nothing is allocated
    # there), so a small file cannot make this allocate huge layers
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                net = build_net(name, **config)
            net.load_state_dict(dict(weights), assign=device == "meta")  # meta: shapes checked, nothing copied
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: bad config for net {name!r}: {_first_line(err)}") from err
        except RuntimeError as err:
            raise ValueError(f"{path}: weights do not fit net {name!r} with config {config}: "
                             f"{_first_line(err)} ...") from err
    return net


def _first_line(err: BaseException) -> str:
    lines = str(err).splitlines()
    return lines[0] if lines else type(err).__name__
