"""A bundle's ``metadata.json``: one typed class per bundle kind, parsed and validated once, in full.

Shared by the exporters (workstation) and the loader (robot), so both agree on one schema: the
exporter builds the JSON and parses it back before writing it. A bundle is its ONNX graph(s)
plus this JSON: signal names and their order, sizes, control period, actuator limits, the files
and their sha256, and what each kind needs to run (a policy's architecture, normalizer and
adaptation operator; a dynamics model's spec, normalization, planner and cost).

Validation is hostile-input proof: every field's JSON type and range is checked, every file the
bundle names must be a plain file name inside the bundle folder, and episode lengths and planner
sizes are bounded, so a bundle can neither read outside its folder nor run (and log) forever.
Every error is one line naming the field and the fix (``BundleError``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from metactl.controllers import AdaptationError, NormalizerSnapshot, PolicyError, PolicySpec, make_operator
from metactl.deploy.errors import BundleError

FORMAT = "metactl-bundle"
FORMAT_VERSION = 2
"""Version 2: every kind lists its graphs in ``files`` (name -> sha256). Version 1 bundles are refused."""
METADATA_FILE = "metadata.json"
OPSET = 17
"""ONNX opset of exported graphs; onnxruntime >= 1.14 runs it."""

POLICY_KIND, MODEL_KIND, RL2_KIND = "policy", "model", "rl2"
ONNX_FILE = "policy.onnx"
RL2_FILE = "rl2_step.onnx"
"""An RL² bundle's GRU step: inputs obs, prev_action, prev_reward [1, 1], prev_done [1, 1], h [1, H]; outputs
action, h_next."""
MAX_TRIAL_EPISODES = 10_000
"""Most episodes an RL² trial may carry its state over."""
DYNAMICS_FILE, ADAPT_FILE, RECURRENT_FILE = "dynamics.onnx", "adapt.onnx", "recurrent_step.onnx"
MODEL_METHODS = ("grbal", "rebal", "mb")
INNER_STEPS = ("sgd", "meta_sgd", "lstm")
"""How ``adapt.onnx`` steps: theta - lr g; theta - alpha (.) g (learned rates ``alpha_i``); theta + LSTM(g)."""
META_LEARNERS = ("maml", "fomaml", "imaml", "evo_maml")
MAX_INNER_STEPS = 100
"""Most adaptation steps an exported graph unrolls."""
ALPHA_PREFIX = "alpha_"
"""Meta-SGD's learned step sizes in ``adapt.onnx``: ``alpha_000`` ... (overridable initializers, theta's shapes)."""
OPTIMIZER_STATE = ("opt_h0", "opt_c0", "opt_h1", "opt_c1")
"""The LSTM optimizer's state in ``adapt.onnx``: inputs [n, H] (n = all parameters' coordinates) and outputs
``<name>_next``; fed zeros before every adaptation (GrBAL restarts from the meta-weights, as trained)."""

# Graph tensor names of a policy graph (the contract between export.py and policy_bundle.py).
OBS_INPUT, PARAMS_INPUT, ACTION_OUTPUT, PARAMS_OUTPUT = "obs", "params", "action", "params_used"

MAX_HORIZON = 100_000
"""Longest episode a bundle may ask for [control steps]: 1000 s at 100 Hz, 100 s at 1 kHz."""
MAX_DIM = 1016
"""Most observations a protocol v1 STATE frame carries (the same bound for actions)."""
MAX_PLANNER_WORK = 2_000_000
"""Most candidate-steps (samples x horizon x iterations) a planner may ask for per control step."""
MAX_WINDOW = 10_000
"""Most past transitions a model may adapt on."""
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

_FIX = "re-run `metactl export` on the trained run"


def _fail(source: str, what: str, fix: str = _FIX) -> BundleError:
    return BundleError(f"bundle {source}: {what}; {fix}")


class _Fields:
    """Typed reads of one JSON object with errors that name the field (``prefix`` + key)."""

    def __init__(self, data: Any, source: str, prefix: str = ""):
        if not isinstance(data, dict):
            where = f"'{prefix.rstrip('.')}'" if prefix else "metadata"
            raise _fail(source, f"{where} must be a JSON object, got {type(data).__name__}")
        self.data, self.source, self.prefix = data, source, prefix

    def fail(self, key: str, what: str) -> BundleError:
        return _fail(self.source, f"metadata '{self.prefix}{key}' {what}")

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise _fail(self.source, f"metadata lacks '{self.prefix}{key}'")
        return self.data[key]

    def str(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r:.60}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {choices}, got {value!r:.60}")
        return value

    def int(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer in [{low}, {high}], got {value!r:.60}")
        return value

    def number(self, key: str, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False) -> float:
        value = self.raw(key)
        ok = _is_number(value) and math.isfinite(value) and value <= high
        ok = ok and (value > low if open_low else value >= low)
        if not ok:
            bound = f"> {low}" if open_low else f">= {low}"
            raise self.fail(key, f"must be a finite number {bound} and <= {high}, got {value!r:.60}")
        return float(value)

    def obj(self, key: str) -> _Fields:
        return _Fields(self.raw(key), self.source, f"{self.prefix}{key}.")

    def dict(self, key: str) -> dict[str, Any]:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a JSON object, got {type(value).__name__}")
        return value

    def names(self, key: str, size: int | None = None) -> tuple[str, ...]:
        value = self.raw(key)
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise self.fail(key, "must be a non-empty list of non-empty strings")
        if len(set(value)) != len(value):
            raise self.fail(key, "must not repeat a name")
        if size is not None and len(value) != size:
            raise self.fail(key, f"must be a list of {size} entries, got {len(value)}")
        if len(value) > MAX_DIM:
            raise self.fail(key, f"has {len(value)} entries, at most {MAX_DIM}")
        return tuple(value)

    def vector(self, key: str, size: int, positive: bool = False) -> np.ndarray:
        value = self.raw(key)
        if not isinstance(value, list) or len(value) != size:
            got = len(value) if isinstance(value, list) else type(value).__name__
            raise self.fail(key, f"must be a list of {size} entries, got {got}")
        if not all(_is_number(v) and math.isfinite(v) and (v > 0 or not positive) for v in value):
            raise self.fail(key, f"must hold finite{' positive' if positive else ''} numbers")
        return np.asarray(value, dtype=np.float64)

    def files(self, key: str, required: tuple[str, ...]) -> dict[str, str]:
        """``{file name: sha256}``; every name a plain file name inside the bundle folder."""
        value = self.dict(key)
        for name, digest in value.items():
            if not _FILE_NAME.match(name) or name in (".", "..") or os.path.basename(name) != name:
                raise self.fail(key, f"names {name!r:.60}, not a plain file name inside the bundle folder")
            if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
                raise self.fail(f"{key}.{name}", "must be a sha256 hex digest (64 characters)")
        missing = [n for n in required if n not in value]
        if missing:
            raise self.fail(key, f"lacks {missing}")
        return dict(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class BundleMetadata:
    """What every bundle kind states: the robot it is for (signals, period, limits) and its files."""

    kind: ClassVar[str]
    family: str
    observation_names: tuple[str, ...]
    action_names: tuple[str, ...]
    control_period: float
    """[s] between commands."""
    horizon: int
    """Control steps per episode the bundle was trained with."""
    action_low: np.ndarray
    action_high: np.ndarray
    files: dict[str, str]
    """Graph file name -> its sha256."""
    metactl_version: str
    train_config: dict[str, Any]
    raw: dict[str, Any]
    """The JSON as read (a copy is what ``metadata`` properties hand out)."""

    @property
    def obs_dim(self) -> int:
        return len(self.observation_names)

    @property
    def act_dim(self) -> int:
        return len(self.action_names)

    @staticmethod
    def _common(f: _Fields, kind: str) -> dict[str, Any]:
        fmt = f.raw("format")
        if fmt != FORMAT:
            raise _fail(f.source, f"'format' is {fmt!r:.60}, not {FORMAT!r} (not a metactl bundle?)")
        version = f.raw("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle {f.source}: format_version {version!r:.20} is not supported by this runtime (it reads "
                f"version {FORMAT_VERSION}); re-export the bundle with `metactl export` of this metactl version"
            )
        got = f.str("bundle_kind", (POLICY_KIND, MODEL_KIND, RL2_KIND))
        if got != kind:
            names = {POLICY_KIND: "an ES policy", MODEL_KIND: "a dynamics model (run with MPC)",
                     RL2_KIND: "an RL² recurrent policy"}  # fmt: skip
            raise BundleError(f"bundle {f.source} holds {names[got]}, but this needs {names[kind]}; pass a bundle of "
                              "the right kind (`metactl run` picks the runtime from the bundle itself)")  # fmt: skip
        obs = f.names("observation_names")
        acts = f.names("action_names")
        low, high = f.vector("action_low", len(acts)), f.vector("action_high", len(acts))
        if not np.all(low < high):
            raise f.fail("action_low", "must be below 'action_high' in every dimension")
        return {
            "family": f.str("family"),
            "observation_names": obs,
            "action_names": acts,
            "control_period": f.number("control_period", 0.0, 60.0, open_low=True),
            "horizon": f.int("horizon", 1, MAX_HORIZON),
            "action_low": low,
            "action_high": high,
            "metactl_version": f.str("metactl_version"),
            "train_config": f.dict("train_config"),
            "raw": f.data,
        }


@dataclasses.dataclass(frozen=True)
class PolicyMetadata(BundleMetadata):
    """An ES policy bundle: ``policy.onnx`` (normalizer, policy and clipping), adapted by its operator."""

    kind: ClassVar[str] = POLICY_KIND
    spec: PolicySpec = dataclasses.field(default=None)  # type: ignore[assignment]
    normalizer: NormalizerSnapshot = dataclasses.field(default=None)  # type: ignore[assignment]
    adaptation: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return self.spec.num_params

    @classmethod
    def parse(cls, data: Any, source: str) -> PolicyMetadata:
        f = _Fields(data, source)
        common = cls._common(f, POLICY_KIND)
        obs_dim, act_dim = len(common["observation_names"]), len(common["action_names"])
        policy = f.obj("policy")
        spec_fields = policy.obj("spec")
        for key in ("obs_dim", "act_dim"):
            spec_fields.int(key, 1, MAX_DIM)
        if "context" in spec_fields.data:
            spec_fields.int("context", 0, MAX_DIM)
        hidden = spec_fields.data.get("hidden", [])
        if not (isinstance(hidden, list) and all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096
                                                 for h in hidden)):  # fmt: skip
            raise spec_fields.fail("hidden", f"must be a list of layer sizes in [1, 4096], got {hidden!r:.60}")
        try:
            spec = PolicySpec.from_dict(policy.dict("spec"))
        except (PolicyError, TypeError, ValueError) as e:
            raise policy.fail("spec", f"is invalid ({e})") from None
        if (spec.obs_dim, spec.act_dim) != (obs_dim, act_dim) or spec.num_params != f.raw("num_params"):
            raise policy.fail("spec", f"sizes ({spec.obs_dim}, {spec.act_dim}, {spec.num_params} parameters) disagree "
                                      "with observation_names, action_names and num_params")  # fmt: skip
        if max(spec.layer_sizes) > 4096 or spec.num_params > 10_000_000:
            raise policy.fail("spec", f"is too large ({spec.num_params} parameters)")
        norm = f.obj("normalizer")
        normalizer = NormalizerSnapshot(norm.vector("mean", obs_dim), norm.vector("std", obs_dim, positive=True))
        try:
            operator = make_operator(f.dict("adaptation"))
        except (AdaptationError, TypeError) as e:
            raise f.fail("adaptation", f"is invalid ({e})") from None
        span = getattr(operator, "span", None)
        if span is not None and span[1] > spec.num_params:
            raise f.fail("adaptation", f"span {list(span)} is beyond the policy's {spec.num_params} parameters")
        return cls(
            **common,
            files=f.files("files", (ONNX_FILE,)),
            spec=spec,
            normalizer=normalizer,
            adaptation=dict(f.dict("adaptation")),
        )


@dataclasses.dataclass(frozen=True)
class AdaptStep:
    """What ``adapt.onnx`` computes: ``steps`` unrolled steps of ``inner_step`` on the window's loss, plus
    ``proximal`` * (phi - theta) in each gradient (iMAML's proximal inner problem; 0 otherwise). ``meta_learner``
    records how the model was meta-trained (it does not change the graph's kind)."""

    meta_learner: str = "maml"
    inner_step: str = "sgd"
    steps: int = 1
    proximal: float = 0.0
    lstm_hidden: int = 0
    """H of the LSTM optimizer (its state is [n, H]); 0 for the other inner steps."""

    @classmethod
    def parse(cls, f: _Fields, method: str) -> AdaptStep:
        """From the metadata's optional ``adaptation`` object (absent: plain one-step SGD, as bundles exported
        before it existed)."""
        if "adaptation" not in f.data:
            return cls()
        a = f.obj("adaptation")
        step = a.str("inner_step", INNER_STEPS)
        out = cls(
            meta_learner=a.str("meta_learner", META_LEARNERS),
            inner_step=step,
            steps=a.int("steps", 1, MAX_INNER_STEPS),
            proximal=a.number("proximal", 0.0, 1e6),
            lstm_hidden=a.int("lstm_hidden", 1, 256) if step == "lstm" else 0,
        )
        if method != "grbal" and out != cls():
            raise f.fail("adaptation", f"must be plain one-step SGD for method {method!r} (only GrBAL meta-learns it)")
        return out

    @classmethod
    def from_extra(cls, adaptation: dict[str, Any] | None, source: str, method: str) -> AdaptStep:
        """From a trained model file's ``adaptation`` record (exporter side), checked as the robot will."""
        return cls.parse(_Fields({"adaptation": adaptation} if adaptation else {}, source), method)

    def state_names(self) -> tuple[str, ...]:
        return OPTIMIZER_STATE if self.inner_step == "lstm" else ()


@dataclasses.dataclass(frozen=True)
class ModelMetadata(BundleMetadata):
    """A dynamics-model bundle (GrBAL / ReBAL / MB): its graphs, normalization, planner and cost."""

    kind: ClassVar[str] = MODEL_KIND
    method: str = ""
    dynamics: Any = None
    """``controllers.dynamics.DynamicsSpec``."""
    stats: Any = None
    """``controllers.dynamics.DynamicsStats``."""
    reward_spec: dict[str, Any] = dataclasses.field(default_factory=dict)
    planner: dict[str, Any] = dataclasses.field(default_factory=dict)
    window: int = 1
    inner_lr: float = 0.0
    decision_steps: int = 1
    """Control steps per planner decision (the action is held in between; the model's step)."""
    adaptation: AdaptStep = dataclasses.field(default_factory=AdaptStep)

    @property
    def graph_files(self) -> tuple[str, ...]:
        """The graphs this model runs with: dynamics, plus its adaptation step or its recurrent state update."""
        return (DYNAMICS_FILE, ADAPT_FILE if self.dynamics.kind == "mlp" else RECURRENT_FILE)

    @classmethod
    def parse(cls, data: Any, source: str) -> ModelMetadata:
        from metactl.controllers.dynamics import DynamicsError, DynamicsSpec, DynamicsStats, ForwardCost
        from metactl.controllers.planners import make_planner

        f = _Fields(data, source)
        common = cls._common(f, MODEL_KIND)
        method = f.str("method", MODEL_METHODS)
        try:
            spec = DynamicsSpec.from_dict(f.dict("dynamics"))
        except (DynamicsError, TypeError, ValueError) as e:
            raise f.fail("dynamics", f"is invalid ({e})") from None
        if max(*spec.hidden, spec.rnn_hidden) > 4096 or len(spec.hidden) > 16:
            raise f.fail("dynamics", f"is too large ({spec.hidden}, LSTM {spec.rnn_hidden})")
        if (spec.obs_dim, spec.act_dim) != (len(common["observation_names"]), len(common["action_names"])):
            raise f.fail("dynamics", "sizes disagree with observation_names / action_names")
        if (spec.kind == "recurrent") != (method == "rebal"):
            raise f.fail("dynamics", f"kind {spec.kind!r} does not fit method {method!r}")
        try:
            stats = DynamicsStats.from_dict(f.dict("stats"))
        except (DynamicsError, KeyError, TypeError, ValueError) as e:
            raise f.fail("stats", f"is invalid ({e})") from None
        try:
            ForwardCost(common["observation_names"], f.dict("reward_spec"))
        except (DynamicsError, KeyError, TypeError, ValueError) as e:
            raise f.fail("reward_spec", f"is invalid ({e})") from None
        if len(stats.obs_mean) != spec.obs_dim or len(stats.act_mean) != spec.act_dim:
            raise f.fail("stats", "sizes disagree with the dynamics model's")
        planner = f.dict("planner")
        try:
            make_planner(planner, common["action_low"], common["action_high"])
        except (TypeError, ValueError) as e:
            raise f.fail("planner", f"is invalid ({e})") from None
        work = int(planner["samples"]) * int(planner["horizon"]) * int(planner.get("iterations", 1))
        if work > MAX_PLANNER_WORK:
            raise f.fail("planner", f"asks for {work} candidate-steps per control step, at most {MAX_PLANNER_WORK}")
        meta = cls(
            **common,
            files={},
            method=method,
            dynamics=spec,
            stats=stats,
            reward_spec=dict(f.dict("reward_spec")),
            planner=dict(planner),
            window=f.int("window", 1, MAX_WINDOW),
            inner_lr=f.number("inner_lr", 0.0, 1e3),
            decision_steps=f.int("decision_steps", 1, 1000),
            adaptation=AdaptStep.parse(f, method),
        )
        return dataclasses.replace(meta, files=f.files("files", meta.graph_files))


@dataclasses.dataclass(frozen=True)
class RL2Metadata(BundleMetadata):
    """An RL² bundle (Duan et al. 2016): ``rl2_step.onnx``, one GRU step whose hidden state [1, ``hidden``] is an
    input and an output, carried over the ``episodes_per_trial`` episodes of a trial it was trained on."""

    kind: ClassVar[str] = RL2_KIND
    hidden: int = 1
    episodes_per_trial: int = 1

    @classmethod
    def parse(cls, data: Any, source: str) -> RL2Metadata:
        f = _Fields(data, source)
        common = cls._common(f, RL2_KIND)
        rl2 = f.obj("rl2")
        if rl2.raw("discrete") is not False:
            raise rl2.fail("discrete", "must be false (the robot runs continuous actions)")
        return cls(
            **{**common, "files": f.files("files", (RL2_FILE,))},
            hidden=rl2.int("hidden", 1, 4096),
            episodes_per_trial=rl2.int("episodes_per_trial", 1, MAX_TRIAL_EPISODES),
        )


PARSERS: dict[str, Callable[[Any, str], BundleMetadata]] = {
    POLICY_KIND: PolicyMetadata.parse,
    MODEL_KIND: ModelMetadata.parse,
    RL2_KIND: RL2Metadata.parse,
}
"""Bundle kind -> its metadata parser."""


def read_metadata_json(directory: str) -> dict[str, Any]:
    """``metadata.json`` of the bundle in ``directory``, not yet validated; ``BundleError`` if unreadable."""
    import json

    if not os.path.isdir(directory):
        raise BundleError(f"bundle directory {directory} not found; create it with `metactl export`")
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.isfile(path):
        raise _fail(directory, f"{METADATA_FILE} is missing")
    if os.path.getsize(path) > 16 * 2**20:
        raise _fail(directory, f"{METADATA_FILE} is larger than 16 MiB")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise _fail(directory, f"{METADATA_FILE} is not valid JSON ({str(e)[:100]})") from None


def parse_metadata(data: Any, source: str) -> BundleMetadata:
    """The typed metadata of either kind (the kind is read from ``bundle_kind``)."""
    kind = data.get("bundle_kind") if isinstance(data, Mapping) else None
    if not isinstance(kind, str) or kind not in PARSERS:
        _Fields(data, source).str("bundle_kind", tuple(PARSERS))
    return guarded(PARSERS[kind], data, source)


def guarded(parse: Callable[[Any, str], BundleMetadata], data: Any, source: str) -> BundleMetadata:
    """``parse(data, source)``, any malformed structure the field checks did not name reported as a BundleError too
    (hostile input must never end in a traceback)."""
    try:
        return parse(data, source)
    except BundleError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
        raise _fail(source, f"metadata is malformed ({type(e).__name__}: {str(e)[:100]})") from None
