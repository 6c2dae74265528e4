"""Write a bundle folder (workstation side): graphs and ``metadata.json``, validated, never over other outputs.

The metadata is parsed back with the loader's own parser before anything is written, every graph is
stamped with ONNX ``metadata_props`` (signal names, sizes, control period: readable by any ONNX tool),
and a folder is only written if it is empty or holds an earlier bundle, whose files are removed first, so
no stale graph survives a re-export and no training run's ``summary.json`` is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import onnx

from metactl.deploy import metadata as md
from metactl.deploy.errors import BundleError


def stamp(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    """Write the bundle's signal contract into the graph's ``metadata_props``."""
    props = {
        "metactl.family": str(meta["family"]),
        "metactl.bundle_kind": str(meta["bundle_kind"]),
        "metactl.observation_names": json.dumps(list(meta["observation_names"])),
        "metactl.action_names": json.dumps(list(meta["action_names"])),
        "metactl.obs_dim": str(len(meta["observation_names"])),
        "metactl.act_dim": str(len(meta["action_names"])),
        "metactl.control_period_s": repr(float(meta["control_period"])),
        "metactl.version": str(meta["metactl_version"]),
    }
    onnx.helper.set_model_props(model, props)


def prepare_out_dir(out_dir: str) -> None:
    """Make ``out_dir`` ready for a bundle: create it, or clear an earlier bundle in it; refuse anything else."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise BundleError(f"--out {out_dir} is a file, not a folder; choose a new folder for the bundle")
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        os.makedirs(out_dir, exist_ok=True)
        return
    try:
        old = md.read_metadata_json(out_dir)
    except BundleError:
        old = None
    if not isinstance(old, dict) or old.get("format") != md.FORMAT:
        raise BundleError(
            f"--out {out_dir} is not empty and holds no bundle (e.g. a training run's outputs); "
            "choose an empty or new folder, or an earlier bundle's folder to replace it"
        )
    for name in os.listdir(out_dir):  # an earlier bundle: every file of it goes, so nothing stale survives
        path = os.path.join(out_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def write_bundle(out_dir: str, graphs: dict[str, onnx.ModelProto], meta: dict[str, Any]) -> str:
    """Stamp and serialize ``graphs`` (file name -> model), record their sha256 in ``meta['files']``, validate the
    metadata with the loader's parser, then write everything into ``out_dir`` (``prepare_out_dir`` rules)."""
    blobs = {}
    for name, model in graphs.items():
        stamp(model, meta)
        blobs[name] = model.SerializeToString()
    meta = {**meta, "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}}
    md.parse_metadata(json.loads(json.dumps(meta)), out_dir)  # the robot's own check, on the JSON it will read
    prepare_out_dir(out_dir)
    for name, data in blobs.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    tmp = os.path.join(out_dir, md.METADATA_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, md.METADATA_FILE))  # last: a bundle is complete once this exists
    return out_dir
