"""The budget file (`.github/carbon-budget.yml`) and the verdict: pure functions over plain data.

`parse`/`load` read and validate the file, refusing anything wrong with one `BudgetError` line
that names the file, the key and the problem; `decide` applies the verdict's rules (README: The
verdict) to one run.
"""

from __future__ import annotations

import enum
import functools
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    import yaml
    from yaml.nodes import MappingNode, Node

    from co2gate.burndown import Burndown
    from co2gate.pareto import Better, Standing

from co2gate import fmt, intensity, metrics, regression, water
from co2gate.errors import InputError
from co2gate.grid.config import IntensityConfig, ProviderName, Signal
from co2gate.sci import EMBODIED_SOURCE, Embodied

__all__ = [
    "DEFAULT_FILE",
    "STARTER",
    "Budget",
    "BudgetError",
    "Decision",
    "GateOn",
    "LedgerBackend",
    "LedgerConfig",
    "OnExceed",
    "Tier",
    "Verdict",
    "allocation_kg",
    "budget_year",
    "decide",
    "decide_water",
    "load",
    "parse",
    "run_limit_kg",
    "tier",
    "worst",
]

DEFAULT_FILE: Final = ".github/carbon-budget.yml"
# A budget file is a few hundred bytes; one over 1 MiB (in the checkout or at a base commit)
# is refused unread: it is no budget, and reading it would cost memory or hang.
MAX_FILE_BYTES: Final = 1024 * 1024
CATEGORY: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # the CLI's --workload names
SHARE_TOLERANCE: Final = 1e-9

# The events a GitHub Actions workflow can run on ("Events that trigger workflows").
_EVENT_NAMES: Final = """
    branch_protection_rule check_run check_suite create delete deployment deployment_status
    discussion discussion_comment fork gollum issue_comment issues label merge_group milestone
    page_build project project_card project_column public pull_request pull_request_review
    pull_request_review_comment pull_request_target push registry_package release
    repository_dispatch schedule status watch workflow_call workflow_dispatch workflow_run
"""
GITHUB_EVENTS: Final = frozenset(_EVENT_NAMES.split())


class BudgetError(InputError):
    """The budget file is missing or wrong: one line, `<file>: <key.path>: <what is wrong>`."""


def _refused(source: str, key: str, problem: str) -> BudgetError:
    return BudgetError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


class OnExceed(str, enum.Enum):
    """What an exceeded budget does to the check."""

    FAIL = "fail"
    WARN = "warn"


class GateOn(str, enum.Enum):
    """Which figure of a run's ~90% interval the gate compares with the budget."""

    ESTIMATE = "estimate"  # the run's figure itself
    UPPER = "upper"  # the high end of its interval: pass only when even that fits


class LedgerBackend(str, enum.Enum):
    """Where the usage ledger lives."""

    BRANCH = "branch"  # a data branch of the repository, through the GitHub API
    FILE = "file"  # a local directory
    NONE = "none"  # nothing is recorded


class Verdict(str, enum.Enum):
    """The gate's outcome for one run, mildest first."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class Tier(str, enum.Enum):
    """How big one run is: low (<10 kg), medium (<100), high (<1000), critical."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class LedgerConfig:
    """The file's `ledger:` section."""

    backend: LedgerBackend = LedgerBackend.BRANCH
    branch: str = "co2gate-ledger"
    path: str = ".co2gate/ledger"
    count: tuple[str, ...] = ("push", "pull_request", "schedule", "workflow_dispatch")


@dataclass(frozen=True)
class Budget:
    """A validated budget file. `source` is the file name that later errors name."""

    annual_budget_kg: float
    allocations: Mapping[str, float]  # workload -> share of annual_budget_kg
    version: int = 1
    year_start: tuple[int, int] = (1, 1)  # (month, day)
    limits: Mapping[str, float] = field(default_factory=dict)  # workload -> kg for one run
    warn_at: float = 0.8
    on_exceed: OnExceed = OnExceed.FAIL
    gate_on: GateOn = GateOn.ESTIMATE
    regression_max_increase: float | None = None
    regression_runs: int = 5  # how many of the base branch's last runs the head is compared with
    regression_confidence: float = 0.9  # of the bootstrap's lower bound on the increase
    # regression.allow_if_better: (metric, which way it improves); None: not configured
    regression_allow_if_better: tuple[str, Better] | None = None
    inference_requests_per_year: float | None = None
    location: intensity.Location = field(default_factory=intensity.Location)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    embodied: Embodied = field(default_factory=Embodied)  # SCI's hardware figures
    intensity: IntensityConfig = field(default_factory=IntensityConfig)  # a live grid signal
    source: str = DEFAULT_FILE
    water: water.WaterFactors = field(default_factory=water.WaterFactors)  # location's factors
    water_budget_l: float | None = None  # litres per budget year, all categories together


@dataclass(frozen=True)
class Decision:
    """The verdict for one run: the fields of verdict.json."""

    verdict: Verdict
    category: str
    allocation_kg: float
    used_before_kg: float
    run_kg: float
    after_kg: float
    remaining_kg: float  # allocation - after: negative once the allocation is exceeded
    share: float | None  # after / allocation; None for an allocation of 0 kg
    warn_at: float
    tier: Tier
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """verdict.json's document."""
        return {
            "verdict": self.verdict.value,
            "category": self.category,
            "allocation_kg": self.allocation_kg,
            "used_before_kg": self.used_before_kg,
            "run_kg": self.run_kg,
            "after_kg": self.after_kg,
            "remaining_kg": self.remaining_kg,
            "share": self.share,
            "warn_at": self.warn_at,
            "tier": self.tier.value,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class WaterGate:
    """The year's water against water_budget_l, this run included when it has a figure."""

    budget_l: float
    used_before_l: float
    run_l: float | None  # None: the run has no water figure
    after_l: float

    def to_json(self) -> dict[str, Any]:
        return {
            "water_budget_l": self.budget_l,
            "water_used_before_l": self.used_before_l,
            "water_run_l": self.run_l,
            "water_after_l": self.after_l,
        }


@dataclass(frozen=True)
class CategoryUsage:
    """One budget category this year, for the report's usage bars."""

    category: str
    allocation_kg: float
    used_before_kg: float  # the ledger's total, this run excluded
    run_kg: float  # this run's emissions when it is of this category, else 0


@dataclass(frozen=True)
class Gated:
    """A run decided against its budget year, and what became of its ledger entry."""

    decision: Decision
    recorded: bool  # the run is in the ledger now (this time or before)
    notes: tuple[str, ...] = field(default=())
    base_run_kg: float | None = None  # the base branch's latest run of the label (PRs)
    regression: regression.Check | None = None  # the regression rule's comparison (PRs)
    categories: tuple[CategoryUsage, ...] = ()
    # The run's category month by month this budget year, up to the run's month:
    # ("YYYY-MM", kg used by the end of that month, this run included).
    burn: tuple[tuple[str, float], ...] = ()
    year: tuple[date, date] | None = None  # the budget year the run falls in, [start, end)
    record_failed: bool = False  # it should have been recorded and the ledger refused
    run_kg_range: tuple[float, float] | None = None  # the run's ~90% interval [low, high]
    quality: Standing | None = None  # the run against its label's history on (CO2e, metric)
    burndown: Burndown | None = None  # the run's category at this year's pace
    water: WaterGate | None = None  # the water budget's standing (water_budget_l set)

    def to_json(self) -> dict[str, Any]:
        """verdict.json: the decision, the burn-down and water standing, the run's range,
        whether it is recorded, and notes."""
        low, high = self.run_kg_range or (self.decision.run_kg, self.decision.run_kg)
        doc = self.decision.to_json()
        if self.burndown is not None:
            doc |= self.burndown.to_json()
        if self.water is not None:
            doc |= self.water.to_json()
        return doc | {
            "emissions_kg_range": [low, high],
            "recorded": self.recorded,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- reading YAML


@functools.cache
def _loader() -> type[yaml.SafeLoader]:
    """SafeLoader that reads 1e3 and 3.65e8 as numbers (YAML 1.2) and refuses duplicate keys.

    Built on first use: PyYAML is imported only when a budget file is read.
    """
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        def construct_object(self, node: Node, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except ValueError as e:  # a date like 2024-13-01; an int past Python's digit limit
                raise ConstructorError(None, None, str(e), node.start_mark) from e

        def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the base class says so
                    continue
                if duplicate:
                    raise ConstructorError(
                        None, None, f"duplicate key {_show(key)}", key_node.start_mark
                    )
            return super().construct_mapping(node, deep)

    # PyYAML (YAML 1.1) reads 3.65e8 as a string: its floats need a dot and a signed exponent.
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def _compose(text: str) -> tuple[Node | None, Any]:
    """The document's top node (for its line) and its data; None, None for an empty one."""
    loader = _loader()(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _document(text: str, source: str) -> dict[Any, Any]:
    """The file's top-level mapping, or a BudgetError saying why it is not one."""
    import yaml

    try:
        node, data = _compose(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(e.problem or e.context).split())
        raise _refused(source, "", f"not valid YAML{where}: {what}") from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        what = f"character #x{e.character:04x}: " if isinstance(e.character, int) else ""
        raise _refused(source, "", f"not valid YAML at line {line}: {what}{e.reason}") from None
    except yaml.YAMLError as e:
        raise _refused(source, "", "not valid YAML: " + " ".join(str(e).split())) from None
    except RecursionError:
        raise _refused(source, "", "not valid YAML: nested too deeply") from None
    if data is None:
        raise _refused(source, "", "is empty (create one with co2gate init)")
    if not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise _refused(
            source,
            "",
            f"must be a mapping of keys (version: 1, annual_budget_kg: ...), "
            f"found {_show(data)} at line {line}",
        )
    return data


# ------------------------------------------------------------------------- validating


class _Problem(Exception):
    """A bad value at a key path; parse() adds the file name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


def _fail(key: str, problem: str) -> NoReturn:
    raise _Problem(key, problem)


def _show(value: object) -> str:
    """A value as the message quotes it: YAML's spelling for scalars, a kind for the rest."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**30 else "a very large number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, (date, bytes)):
        return f"a {type(value).__name__} ({value!s:.40})"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def _did_you_mean(word: object, choices: Collection[str]) -> str:
    from difflib import get_close_matches

    close = get_close_matches(word, choices, n=1) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section(value: object, key: str, keys: Collection[str]) -> Mapping[Any, Any]:
    """A mapping with only the given keys; null (all of it commented out) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(key, f"must be a mapping, got {_show(value)}")
    for name in value:
        if name not in keys:
            _fail(key, f"unknown key {_show(name)}{_did_you_mean(name, keys)}")
    return value


def _number(value: object, key: str, want: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(key, f"must be {want}, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        _fail(key, f"must be {want}, got {_show(value)}")
    return number


def _positive(value: object, key: str) -> float:
    number = _number(value, key, "a number > 0")
    if number <= 0:
        _fail(key, f"must be a number > 0, got {_show(value)}")
    return number


def _share(value: object, key: str) -> float:
    return _fraction(value, key, zero=True)


def _non_negative(value: object, key: str) -> float:
    number = _number(value, key, "a number >= 0")
    if number < 0:
        _fail(key, f"must be a number >= 0, got {_show(value)}")
    return number


def _optional_positive(value: object, key: str) -> float | None:
    return None if value is None else _positive(value, key)


def _runs(value: object) -> int:
    key = "regression.runs"
    if value is None:
        return 5
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        _fail(key, f"must be a whole number from 1 to 100, got {_show(value)}")
    return value


def _confidence(value: object) -> float:
    key, want = "regression.confidence", "a number above 0.5 and below 0.999"
    if value is None:
        return 0.9
    number = _number(value, key, want)
    if not 0.5 < number < 0.999:
        _fail(key, f"must be {want}, got {_show(value)}")
    return number


def _allow_if_better(value: object) -> tuple[str, Better] | None:
    """regression.allow_if_better: {metric: NAME, better: lower|higher}."""
    from co2gate.pareto import Better  # here: only a file with allow_if_better needs it

    key = "regression.allow_if_better"
    if value is None:
        return None
    given = _section(value, key, ("metric", "better"))
    metric, better = given.get("metric"), given.get("better")
    if metric is None:
        _fail(f"{key}.metric", "missing: the metric (--metric NAME=VALUE) that may excuse a run")
    if not isinstance(metric, str) or not metrics.NAME.fullmatch(metric):
        _fail(
            f"{key}.metric",
            f"must be a metric name (1-{metrics.MAX_NAME} letters, digits and _ . : / -), "
            f"got {_show(metric)}",
        )
    if better is None:
        _fail(f"{key}.better", "missing: lower (a loss) or higher (an accuracy)")
    return metric, _choice(better, f"{key}.better", Better)


def _fraction(value: object, key: str, *, zero: bool) -> float:
    want = "a share between 0 and 1" if zero else "a share > 0 and <= 1"
    number = _number(value, key, want)
    if not (0 <= number <= 1) or (number == 0 and not zero):
        _fail(key, f"must be {want}, got {_show(value)}")
    return number


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(key, f"must be a non-empty string, got {_show(value)}")
    return value


def _choice(value: object, key: str, kind: type[enum.Enum]) -> Any:
    names = [m.value for m in kind]
    if not isinstance(value, str) or value not in names:
        _fail(key, f"must be one of {', '.join(names)}, got {_show(value)}")
    return kind(value)


def _version(value: object) -> int:
    if value is None:
        _fail("version", "missing: the file must start with version: 1")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail("version", f"must be the number 1, got {_show(value)}")
    if value != 1:
        _fail("version", f"unsupported version {_show(value)} (this co2gate reads version 1)")
    return 1


def _year_start(value: object) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    text = value if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9]{2}-[0-9]{2}", text):
        quote = "" if isinstance(value, str) else ' (write it as a quoted string, e.g. "04-01")'
        _fail("year_start", f"{_show(value)} is not a valid MM-DD date{quote}")
    month, day = int(text[:2]), int(text[3:])
    if (month, day) == (2, 29):
        _fail("year_start", "'02-29' is not in every year; use '02-28' or '03-01'")
    try:
        date(2001, month, day)
    except ValueError:
        _fail("year_start", f"{_show(value)} is not a valid MM-DD date")
    return (month, day)


def _category(name: object, key: str) -> str:
    if not isinstance(name, str) or not CATEGORY.fullmatch(name):
        _fail(
            key,
            f"{_show(name)} is not a workload name: use lower-case letters, digits, - and _, "
            "starting with a letter",
        )
    return name


def _no_allocation(category: str, allocations: Collection[str]) -> str:
    listed = ", ".join(allocations) or "none"
    hint = _did_you_mean(category, allocations)
    return f"workload {category!r} has no allocation{hint}; allocations: {listed}"


def _allocations(value: object) -> Mapping[str, float]:
    if value is None:
        _fail("allocations", "missing: give each workload's share, e.g. training: 0.7")
    if not isinstance(value, dict):
        _fail("allocations", f"must be a mapping of workload: share, got {_show(value)}")
    if not value:
        _fail("allocations", "must give at least one workload's share, e.g. training: 0.7")
    shares = {}
    for name, share in value.items():
        category = _category(name, "allocations")
        shares[category] = _fraction(share, f"allocations.{category}", zero=True)
    total = math.fsum(shares.values())
    if total > 1 + SHARE_TOLERANCE:
        _fail("allocations", f"shares sum to {total:.6g}, more than 1")
    return MappingProxyType(shares)


def _limits(value: object, allocations: Mapping[str, float]) -> Mapping[str, float]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        _fail("limits", f"must be a mapping of workload: kg, got {_show(value)}")
    limits = {}
    for name, kg in value.items():
        category = _category(name, "limits")
        if category not in allocations:
            _fail("limits", _no_allocation(category, allocations))
        limits[category] = _positive(kg, f"limits.{category}")
    return MappingProxyType(limits)


_WATER_KEYS: Final = ("wue_l_per_kwh", "source_water_l_per_kwh", "water_source")


def _water(value: object, source: str) -> water.WaterFactors:
    """location's water factors: none given, no water figure (co2gate has no default)."""
    raw = value if isinstance(value, dict) else {}
    factors = {}
    for key, most in (
        ("wue_l_per_kwh", water.MAX_WUE_L_PER_KWH),
        ("source_water_l_per_kwh", water.MAX_SOURCE_L_PER_KWH),
    ):
        if raw.get(key) is not None:
            want = f"a number from 0 to {most:g} (litres per kWh)"
            number = _number(raw[key], f"location.{key}", want)
            if not 0 <= number <= most:
                _fail(f"location.{key}", f"must be {want}, got {_show(raw[key])}")
            factors[key] = number
    given = raw.get("water_source")
    if given is not None:
        text = " ".join(_text(given, "location.water_source").split())
        if len(text) > water.MAX_SOURCE_TEXT:
            _fail("location.water_source", f"is longer than {water.MAX_SOURCE_TEXT} characters")
        if not factors:
            _fail("location.water_source", "names the source of water factors that are not set")
    else:
        text = f"set in {source} without a water_source"
    return water.WaterFactors(**factors, source=text) if factors else water.WaterFactors()


def _water_budget(value: object, factors: water.WaterFactors) -> float | None:
    if value is None:
        return None
    litres = _positive(value, "water_budget_l")
    if not factors.configured:
        _fail(
            "water_budget_l",
            "needs location.wue_l_per_kwh or location.source_water_l_per_kwh: without them "
            "no run has a water figure",
        )
    return litres


def _location(value: object) -> intensity.Location:
    raw = _section(
        value, "location", ("country", "region", "cloud", "intensity", "pue", *_WATER_KEYS)
    )

    def text(key: str) -> str | None:
        return None if raw.get(key) is None else _text(raw[key], f"location.{key}")

    level, pue = raw.get("intensity"), raw.get("pue")
    location = intensity.Location(
        country=text("country"),
        region=text("region"),
        cloud=text("cloud"),
        intensity_g_per_kwh=None
        if level is None
        else _number(level, "location.intensity", "a number >= 0 (gCO2e/kWh)"),
        pue=1.0 if pue is None else _number(pue, "location.pue", "a number >= 1"),
    )
    try:
        return intensity.validate(location)
    except intensity.LocationError as e:
        _fail(f"location.{e.key}", str(e))


# Names a provider's key may not be read from: the GitHub token never leaves for a third party.
_GITHUB_TOKEN_VARIABLES: Final = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
    }
)


def _variable(value: object, key: str) -> str:
    name = _text(value, key)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", name):
        _fail(key, f"{_show(name)} is not an environment variable name")
    if name.upper() in _GITHUB_TOKEN_VARIABLES:
        _fail(key, f"{name} holds the GitHub token, which co2gate never sends to a provider")
    return name


def _grid(value: object, location: object) -> IntensityConfig:
    """The `intensity:` section: which live grid signal to use (none: codecarbon's data)."""
    keys = ("provider", "zone", "signal", "token_env", "user_env", "password_env", "url", "path")
    raw = _section(value, "intensity", keys)
    provider = (
        ProviderName.NONE
        if raw.get("provider") is None
        else _choice(raw["provider"], "intensity.provider", ProviderName)
    )
    given = {k: raw[k] for k in keys[1:] if raw.get(k) is not None}
    if provider is ProviderName.NONE:
        if given:
            _fail(f"intensity.{next(iter(given))}", "needs intensity.provider")
        return IntensityConfig()
    if isinstance(location, dict) and location.get("intensity") is not None:
        _fail(
            "intensity.provider",
            "location.intensity is set too: a fixed figure and a provider cannot both apply",
        )
    url = given.get("url")
    if url is not None and not re.fullmatch(
        r"https?://[^\s/]+(/\S*)?", _text(url, "intensity.url")
    ):
        _fail("intensity.url", f"must be an http(s) URL, got {_show(url)}")
    needed = {
        ProviderName.ELECTRICITYMAPS: ("zone", "token_env"),
        ProviderName.WATTTIME: ("zone", "user_env", "password_env"),
        ProviderName.CARBONINTENSITY_UK: (),
        ProviderName.FILE: ("path",),
    }[provider]
    for key in needed:
        if key not in given:
            _fail(f"intensity.{key}", f"missing: provider {provider.value} needs it")
    return IntensityConfig(
        provider=provider,
        zone=None if "zone" not in given else _text(given["zone"], "intensity.zone"),
        signal=Signal.AVERAGE
        if "signal" not in given
        else _choice(given["signal"], "intensity.signal", Signal),
        token_env=None
        if "token_env" not in given
        else _variable(given["token_env"], "intensity.token_env"),
        user_env=None
        if "user_env" not in given
        else _variable(given["user_env"], "intensity.user_env"),
        password_env=None
        if "password_env" not in given
        else _variable(given["password_env"], "intensity.password_env"),
        url=url,
        path=None if "path" not in given else _text(given["path"], "intensity.path"),
    )


def _ledger(value: object) -> LedgerConfig:
    raw = _section(value, "ledger", ("backend", "branch", "path", "count"))
    default = LedgerConfig()
    branch = default.branch if raw.get("branch") is None else _text(raw["branch"], "ledger.branch")
    if any(c.isspace() for c in branch):
        _fail("ledger.branch", f"{_show(branch)} is not a branch name: it has white space")
    return LedgerConfig(
        backend=default.backend
        if raw.get("backend") is None
        else _choice(raw["backend"], "ledger.backend", LedgerBackend),
        branch=branch,
        path=default.path if raw.get("path") is None else _ledger_path(raw["path"]),
        count=default.count if raw.get("count") is None else _events(raw["count"]),
    )


# Linux's limits: bytes in one name of a path (NAME_MAX) and in a whole path (PATH_MAX).
MAX_PATH_NAME: Final = 255
MAX_PATH: Final = 4095


def _ledger_path(value: object) -> str:
    """ledger.path: a directory path the file system can hold, refused here rather than
    when the run is over and its entry is to be written."""
    path = _text(value, "ledger.path")
    try:
        data = os.fsencode(path)
    except UnicodeEncodeError:
        _fail("ledger.path", f"{_show(path)} is not valid Unicode text")
    if b"\0" in data:
        _fail("ledger.path", f"{_show(path)} holds a NUL character")
    if len(data) > MAX_PATH:
        _fail("ledger.path", f"{_show(path)} is longer than {MAX_PATH} bytes")
    if any(len(name) > MAX_PATH_NAME for name in data.split(b"/")):
        _fail("ledger.path", f"{_show(path)} has a name longer than {MAX_PATH_NAME} bytes")
    return path


def _events(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        _fail("ledger.count", f"must be a list of GitHub event names, got {_show(value)}")
    for event in value:
        if not isinstance(event, str) or event not in GITHUB_EVENTS:
            hint = _did_you_mean(event, GITHUB_EVENTS)
            _fail("ledger.count", f"{_show(event)} is not a GitHub Actions event{hint}")
    return tuple(dict.fromkeys(value))


_TOP_KEYS: Final = (
    "version",
    "annual_budget_kg",
    "year_start",
    "allocations",
    "limits",
    "warn_at",
    "on_exceed",
    "gate_on",
    "regression",
    "inference",
    "location",
    "ledger",
    "embodied",
    "intensity",
    "water_budget_l",
)


def _embodied(value: object) -> Embodied:
    """The `embodied:` section: overrides of SCI's hardware figures (sci.Embodied)."""
    given = _section(value, "embodied", ("server_kg", "gpu_kg", "lifetime_years", "server_share"))
    checks: dict[str, Callable[[object, str], float]] = {
        "server_kg": _non_negative,
        "gpu_kg": _non_negative,
        "lifetime_years": _positive,
        "server_share": _share,
    }
    overrides = {
        name: check(given[name], f"embodied.{name}")
        for name, check in checks.items()
        if given.get(name) is not None
    }
    if not overrides:
        return Embodied()
    return replace(
        Embodied(), **overrides, source=f"{EMBODIED_SOURCE}; overridden in the budget file"
    )


def _budget(doc: Mapping[Any, Any], source: str) -> Budget:
    top = _section(doc, "", _TOP_KEYS)
    version = _version(top.get("version"))
    if top.get("annual_budget_kg") is None:
        _fail("annual_budget_kg", "missing: the CO2e budget for a year, in kg, e.g. 500")
    allocations = _allocations(top.get("allocations"))
    regression = _section(
        top.get("regression"),
        "regression",
        ("max_increase", "runs", "confidence", "allow_if_better"),
    )
    inference = _section(top.get("inference"), "inference", ("requests_per_year",))
    warn_at = top.get("warn_at")
    on_exceed = top.get("on_exceed")
    gate_on = top.get("gate_on")
    location = _location(top.get("location"))
    factors = _water(top.get("location"), source)
    return Budget(
        version=version,
        annual_budget_kg=_positive(top["annual_budget_kg"], "annual_budget_kg"),
        year_start=_year_start(top.get("year_start")),
        allocations=allocations,
        limits=_limits(top.get("limits"), allocations),
        warn_at=0.8 if warn_at is None else _fraction(warn_at, "warn_at", zero=False),
        on_exceed=OnExceed.FAIL if on_exceed is None else _choice(on_exceed, "on_exceed", OnExceed),
        gate_on=GateOn.ESTIMATE if gate_on is None else _choice(gate_on, "gate_on", GateOn),
        regression_max_increase=_optional_positive(
            regression.get("max_increase"), "regression.max_increase"
        ),
        regression_runs=_runs(regression.get("runs")),
        regression_confidence=_confidence(regression.get("confidence")),
        regression_allow_if_better=_allow_if_better(regression.get("allow_if_better")),
        inference_requests_per_year=_optional_positive(
            inference.get("requests_per_year"), "inference.requests_per_year"
        ),
        location=location,
        ledger=_ledger(top.get("ledger")),
        embodied=_embodied(top.get("embodied")),
        intensity=_grid(top.get("intensity"), top.get("location")),
        source=source,
        water=factors,
        water_budget_l=_water_budget(top.get("water_budget_l"), factors),
    )


def parse(text: str, source: str) -> Budget:
    """Read and validate a budget file's text; `source` names it in every BudgetError."""
    doc = _document(text, source)
    try:
        return _budget(doc, source)
    except _Problem as p:
        raise _refused(source, p.key, p.problem) from None


def load(path: Path) -> Budget:
    """Read and validate the budget file at `path`."""
    return parse(read_text(path), str(path))


def read_text(path: Path) -> str:
    """The text of the budget file at `path`: a regular file (a symlink is followed) of at
    most MAX_FILE_BYTES of UTF-8. Anything else (a directory, a FIFO, a device such as
    /dev/zero, a huge file) is refused unread, with a BudgetError naming the file."""
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _refused(source, "", NOT_FOUND) from None
    except OSError as e:
        raise _refused(source, "", f"cannot be read: {e.strerror or e}") from None
    try:
        size = _regular_size(fd, source)
        data = b""
        while len(data) <= MAX_FILE_BYTES:  # a file that grows while read is cut here
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise _refused(source, "", f"cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise _refused(source, "", _too_big(max(size, len(data))))
    return decode(data, source)


NOT_FOUND: Final = "not found (create one with co2gate init)"


def read_before(path: Path, data: bytes | None) -> str:
    """read_text() of a file read earlier, as `data` (None: there was none): co2gate/launch.py
    reads the budget file before the command starts, so the command cannot change it."""
    if data is None:
        raise _refused(str(path), "", NOT_FOUND)
    return decode(data, str(path))


def decode(data: bytes, source: str) -> str:
    """A budget file's bytes as text, or a BudgetError naming `source`."""
    if len(data) > MAX_FILE_BYTES:
        raise _refused(source, "", _too_big(len(data)))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refused(source, "", f"not UTF-8 text (byte {e.start})") from None


def _regular_size(fd: int, source: str) -> int:
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise _refused(source, "", "is a directory, not a budget file")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a file"
        )
        raise _refused(source, "", f"is {kind}, not a regular file: a budget file must be one")
    if st.st_size > MAX_FILE_BYTES:
        raise _refused(source, "", _too_big(st.st_size))
    return st.st_size


def _too_big(size: int) -> str:
    return (
        f"is {fmt.count(size)} bytes; a budget file has at most {fmt.count(MAX_FILE_BYTES)} (1 MiB)"
    )


# ---------------------------------------------------------------------------- the verdict


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe of several verdicts (fail over warn over pass)."""
    order = list(Verdict)  # declared mildest first
    return max(verdicts, key=order.index)


def tier(run_kg: float) -> Tier:
    """The size class of one run's emissions."""
    if run_kg < 10:
        return Tier.LOW
    if run_kg < 100:
        return Tier.MEDIUM
    if run_kg < 1000:
        return Tier.HIGH
    return Tier.CRITICAL


def budget_year(budget: Budget, when: date) -> tuple[date, date]:
    """The [start, end) of the budget year that contains `when`."""
    month, day = budget.year_start  # never 02-29: parse() refuses it
    start = date(when.year, month, day)
    if when < start:
        start = date(when.year - 1, month, day)
    return start, date(start.year + 1, month, day)


def allocation_kg(budget: Budget, category: str) -> float:
    """A workload's share of the annual budget, in kg; BudgetError if it has none."""
    if category not in budget.allocations:
        raise _refused(budget.source, "allocations", _no_allocation(category, budget.allocations))
    return budget.annual_budget_kg * budget.allocations[category]


def run_limit_kg(budget: Budget, category: str, max_kg: float | None = None) -> float | None:
    """The most one run of `category` may emit: limits[category] or max_kg, the smaller."""
    caps = [kg for kg in (budget.limits.get(category), max_kg) if kg is not None]
    return min(caps) if caps else None


def _standing(amount: float, allocation: float) -> str:
    """'(57.1%, 150 kg left)': how far into its allocation a category is."""
    rest = fmt.left(allocation, amount)
    return f"({fmt.pct(amount / allocation)}, {rest})" if allocation > 0 else f"({rest})"


def _check_inputs(**kg: float | None) -> None:
    for name, value in kg.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _failures(
    budget: Budget,
    category: str,
    allocation: float,
    after_kg: float,
    run_kg: float,
    compared: regression.Check | None,
    is_pull_request: bool,
    per_request_kg: float | None,
    max_kg: float | None,
    stopped_by_guard: tuple[float, float] | None,
    upper: tuple[float, float] | None = None,
) -> list[str]:
    """A sentence for each rule of the verdict (README: The verdict) that this run breaks.

    `upper` (gate_on: upper): (the year's use with the run's high end, the high end), which
    the allocation and the per-run limit are checked against instead of the estimates.
    """
    broken = []
    gated_after, gated_run = upper or (after_kg, run_kg)
    what = "the run's high end" if upper else "the run's"
    if gated_after > allocation:
        broken.append(
            f"That exceeds the {fmt.mass(allocation)} {category} allocation."
            if upper is None
            else f"With {what} of {fmt.mass(gated_run)} the year reaches "
            f"{fmt.mass(gated_after)}: that exceeds the {fmt.mass(allocation)} {category} "
            "allocation."
        )
    if stopped_by_guard is not None:
        at_kg, cap_kg = stopped_by_guard
        broken.append(
            f"Stopped by the guard at {fmt.mass(at_kg)}, the limit is {fmt.mass(cap_kg)}."
        )
    limit = run_limit_kg(budget, category, max_kg)
    if limit is not None and gated_run > limit:
        broken.append(
            f"The run's {'high end ' if upper else ''}{fmt.mass(gated_run)} exceeds the "
            f"{fmt.mass(limit)} limit for one {category} run."
        )
    if is_pull_request and compared is not None and compared.failed:
        broken.append(compared.reason())
    per_year = budget.inference_requests_per_year
    if category == "inference" and per_request_kg is not None and per_year is not None:
        projected = per_request_kg * per_year
        if projected > allocation:
            broken.append(
                f"At {fmt.mass(per_request_kg)} per request, {fmt.count(per_year)} requests a "
                f"year would emit {fmt.mass(projected)}, more than the {fmt.mass(allocation)} "
                "inference allocation."
            )
    return broken


def _high_end_notes(
    budget: Budget,
    category: str,
    allocation: float,
    used_before_kg: float,
    run_kg: float,
    high_kg: float,
    max_kg: float | None,
) -> list[str]:
    """gate_on: estimate: where only the high end of the run's range crosses a line, say so."""
    said = []
    if used_before_kg + run_kg <= allocation < used_before_kg + high_kg:
        said.append(
            f"The high end of the run's range, {fmt.mass(high_kg)}, would take {category} to "
            f"{fmt.mass(used_before_kg + high_kg)}, over its {fmt.mass(allocation)} allocation; "
            "gate_on: estimate gates on the estimate."
        )
    limit = run_limit_kg(budget, category, max_kg)
    if limit is not None and run_kg <= limit < high_kg:
        said.append(
            f"The high end of the run's range, {fmt.mass(high_kg)}, exceeds the "
            f"{fmt.mass(limit)} limit for one {category} run; gate_on: estimate gates on the "
            "estimate."
        )
    return said


def regression_check(
    budget: Budget, head: float, base_runs: Sequence[float], seed: str = "", per: str | None = None
) -> regression.Check | None:
    """The regression rule's comparison of `head` with the base runs (oldest first), under
    the file's regression settings; None without max_increase or without a base run."""
    most = budget.regression_max_increase
    if most is None or not base_runs:
        return None
    return regression.check(
        head,
        base_runs,
        max_increase=most,
        runs=budget.regression_runs,
        confidence=budget.regression_confidence,
        seed=seed,
        per=per,
    )


def decide(
    budget: Budget,
    category: str,
    used_before_kg: float,
    run_kg: float,
    *,
    base_run_kg: float | None = None,
    is_pull_request: bool = False,
    per_request_kg: float | None = None,
    max_kg: float | None = None,
    stopped_by_guard: tuple[float, float] | None = None,
    run_range_kg: tuple[float, float] | None = None,
    base_runs_kg: Sequence[float] = (),
    seed: str = "",
    compared: regression.Check | None = None,
) -> Decision:
    """The verdict for one run of `category` after `used_before_kg` this budget year.

    max_kg is a per-run limit given for this run (`run --max-kg`), which applies where it
    is below limits[category]; stopped_by_guard is (kg when the live guard stopped the run,
    the limit it enforced), a failure of its own. run_range_kg is the run's ~90% interval
    [low, high]: with gate_on: upper the allocation, the limit and the warning level are
    checked on its high end (the year's earlier runs count at their estimates). base_runs_kg
    are the base branch's runs of the label, oldest first (base_run_kg: its latest alone),
    for the regression rule (regression_check), seeded by `seed`; or `compared`, the
    comparison already made (per unit of work).
    """
    _check_inputs(
        used_before_kg=used_before_kg,
        run_kg=run_kg,
        base_run_kg=base_run_kg,
        per_request_kg=per_request_kg,
        max_kg=max_kg,
        run_low_kg=run_range_kg[0] if run_range_kg else None,
        run_high_kg=run_range_kg[1] if run_range_kg else None,
    )
    allocation = allocation_kg(budget, category)
    after = used_before_kg + run_kg
    low_kg, high_kg = run_range_kg or (run_kg, run_kg)
    high_kg = max(high_kg, run_kg)
    span = f" ({fmt.mass_range(low_kg, high_kg)})" if high_kg > low_kg else ""
    if not base_runs_kg and base_run_kg is not None:
        base_runs_kg = (base_run_kg,)
    if compared is None:
        compared = regression_check(budget, run_kg, base_runs_kg, seed)
    reasons = [
        f"{category} had used {fmt.mass(used_before_kg)} of its {fmt.mass(allocation)} allocation "
        f"{_standing(used_before_kg, allocation)}; this run's {fmt.mass(run_kg)}{span} brings it "
        f"to {fmt.mass(after)} {_standing(after, allocation)}."
    ]
    upper = None
    if budget.gate_on is GateOn.UPPER:
        upper = (used_before_kg + high_kg, high_kg)
        reasons.append(
            f"gate_on: upper: the high end of the run's range, {fmt.mass(high_kg)}, decides "
            f"the verdict, not its estimate {fmt.mass(run_kg)}."
        )
    gated_after = upper[0] if upper else after
    broken = _failures(
        budget,
        category,
        allocation,
        after,
        run_kg,
        compared,
        is_pull_request,
        per_request_kg,
        max_kg,
        stopped_by_guard,
        upper,
    )
    if upper is None and high_kg > run_kg:
        reasons += _high_end_notes(
            budget, category, allocation, used_before_kg, run_kg, high_kg, max_kg
        )
    if is_pull_request and compared is not None and not compared.failed:
        reasons.append(compared.reason())  # within max_increase: said, not a failure
    warn_line = budget.warn_at * allocation
    if broken:
        verdict = Verdict.FAIL
        reasons += broken
        if budget.on_exceed is OnExceed.WARN:
            verdict = Verdict.WARN
            reasons.append("on_exceed: warn let it through: the check warns instead of failing.")
    elif gated_after >= warn_line:
        verdict = Verdict.WARN
        reasons.append(
            f"That reaches the {fmt.pct(budget.warn_at)} warning level ({fmt.mass(warn_line)})."
        )
    else:
        verdict = Verdict.PASS
        reasons.append(
            f"That is below the {fmt.pct(budget.warn_at)} warning level ({fmt.mass(warn_line)})."
        )
    return Decision(
        verdict=verdict,
        category=category,
        allocation_kg=allocation,
        used_before_kg=used_before_kg,
        run_kg=run_kg,
        after_kg=after,
        remaining_kg=allocation - after,
        share=after / allocation if allocation > 0 else None,
        warn_at=budget.warn_at,
        tier=tier(run_kg),
        reasons=tuple(reasons),
    )


def decide_water(
    budget: Budget, decision: Decision, used_before_l: float, run_l: float | None
) -> tuple[Decision, WaterGate | None]:
    """The decision with the water budget's rule applied (gated like carbon: over
    water_budget_l fails, from warn_at of it warns), and the water's standing; unchanged
    without a water_budget_l."""
    most = budget.water_budget_l
    if most is None:
        return decision, None
    _check_inputs(used_before_l=used_before_l, run_l=run_l)
    after = used_before_l + (run_l or 0.0)
    standing = WaterGate(most, used_before_l, run_l, after)
    share = fmt.pct(after / most)
    this = "this run has no water figure" if run_l is None else f"this run's {fmt.water(run_l)}"
    reasons = [
        f"Water this budget year: {fmt.water(used_before_l)} before this run, {this}: "
        f"{fmt.water(after)} of the {fmt.water(most)} water budget ({share})."
    ]
    verdict = decision.verdict
    if after > most:
        reasons.append(f"That exceeds the {fmt.water(most)} water budget.")
        if budget.on_exceed is OnExceed.WARN:
            verdict = worst((verdict, Verdict.WARN))
            reasons.append("on_exceed: warn let the water through: the check warns.")
        else:
            verdict = Verdict.FAIL
    elif after >= budget.warn_at * most:
        verdict = worst((verdict, Verdict.WARN))
        reasons.append(
            f"That reaches the {fmt.pct(budget.warn_at)} water warning level "
            f"({fmt.water(budget.warn_at * most)})."
        )
    return replace(decision, verdict=verdict, reasons=(*decision.reasons, *reasons)), standing


STARTER: Final = """\
# co2gate carbon budget: how much CO2e this repository's CI may emit in a year.
# Read from the base branch on pull requests, so a PR cannot raise its own budget.
version: 1

annual_budget_kg: 500         # CO2e per budget year, in kg
year_start: "01-01"           # MM-DD: when the budget year starts (e.g. "04-01" for April)

allocations:                  # each workload's share of the annual budget; shares sum to <= 1
  training: 0.7               # co2gate run --workload training (the default)
  inference: 0.3

limits:                       # optional: the most one run of a workload may emit, in kg
  training: 25

warn_at: 0.8                  # warn once a workload has used this share of its allocation
on_exceed: fail               # fail | warn: what an exceeded budget does to the check
# gate_on: upper              # estimate (default) | upper: gate on the high end of each
#                             # run's ~90% range, so only a run that surely fits passes

# regression:
#   max_increase: 0.2         # fail a PR whose run emits 20% more than the base branch's
#   runs: 5                   # ... last 5 runs of its label (their median; 1-100)
#   confidence: 0.9           # ... beyond noise: a bootstrap lower bound at 90% (0.5-0.999)
#   allow_if_better:          # ... unless the run's --metric improved on the base runs' median
#     metric: val_loss
#     better: lower           # lower | higher
# inference:
#   requests_per_year: 3.65e8 # projects an inference run's per-request figure to a year

location:
  country: null               # ISO 3166-1 alpha-3, e.g. USA, FRA, DEU; null: world average
  region: null                # a US state, Canadian or Chinese province, Nordic zone (SE3)
  cloud: null                 # instead of country: "aws:us-east-1", "gcp:us-central1", ...
  intensity: null             # gCO2e/kWh: overrides the location
  pue: 1.0                    # data-centre Power Usage Effectiveness, >= 1
  # wue_l_per_kwh: null       # optional water: on-site litres per kWh of IT energy (WUE)
  # source_water_l_per_kwh: null  # optional: litres consumed generating a kWh (x PUE)
  # water_source: null        # where those two figures come from; co2gate has no default
# water_budget_l: null        # optional: litres of water a budget year may use, gated like CO2e

ledger:                       # where each year's usage is recorded
  backend: branch             # branch (a data branch, through the GitHub API) | file | none
  branch: co2gate-ledger
  path: .co2gate/ledger       # for backend: file
  count: [push, pull_request, schedule, workflow_dispatch]
"""
