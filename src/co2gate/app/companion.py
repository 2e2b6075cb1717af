"""The workflow_run companion: gate a measured run's artifact under facts this repository trusts.

A fork's pull request runs with a read-only token, so its job can neither comment nor record.
A second workflow, `on: workflow_run`, runs in this repository with a write token, downloads
that job's emissions.json and runs `co2gate check --workflow-run`. The artifact is the fork's
data. Its energy is the one figure taken from it, and only after checks that the artifact
agrees with itself (its kg follows from its energy, PUE and intensity; its intensity is what
the source it names gives) and that the energy is physically possible for its duration and
hardware. The kg recorded is that energy priced with this repository's own location and PUE
(the budget file of the checkout, the base), never the artifact's. Where the run is recorded
and commented (repository, run, commit, pull request) comes from the event and the API.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from co2gate import fmt, gpus, intensity, uncertainty, units
from co2gate.budget import CATEGORY, Budget
from co2gate.emissions import place_of
from co2gate.errors import InputError
from co2gate.github.context import WorkflowRun, is_pr_number
from co2gate.intensity import Location, LocationError
from co2gate.model import CiInfo, Measurement
from co2gate.sci import sci
from co2gate.tokens import github_token

if TYPE_CHECKING:
    from co2gate.github.comments import PullHeads

_MAX_CANDIDATES = 3  # pull requests checked per run: each is one API request


@dataclass(frozen=True)
class Adopted:
    """An artifact's measurement with the trusted `ci` block, and the notes for its report."""

    measurement: Measurement
    notes: tuple[str, ...]


# What an artifact's figures are held to. co2gate writes every float at full precision
# (repr), so its own figures agree to float rounding; 1e-9 leaves room for a different order
# of operations and for "configured: X" sources, which print X to 10 significant digits.
REL_TOL: Final = 1e-9
ABS_TOL_KG: Final = 1e-12  # a milligram's millionth: a zero-energy run's kg is 0
# The physical bound on an artifact's energy (see check_energy).
ENERGY_MARGIN: Final = 2.0
UNKNOWN_GPU_W: Final = 1500.0  # above every GPU's board power in co2gate.gpus (B200: 1,000 W)
CPU_RAM_W: Final = 4000.0  # 4 sockets of 500 W and 2 TB of RAM (about 800 W), rounded up
CLOCK_SKEW_S: Final = 600.0  # a self-hosted runner's clock against GitHub's
MIN_WINDOW_S: Final = 1.0  # the bound holds a shorter run to a second's worth of energy
_CONFIGURED = re.compile(r"configured: ([0-9.eE+-]{1,40}) gCO2e/kWh")
_CODECARBON = re.compile(r"codecarbon ([0-9][0-9A-Za-z.+-]{0,40}): ")


def check_artifact(m: Measurement, path: Path, run: WorkflowRun | None = None) -> tuple[str, ...]:
    """Refuse an artifact whose figures a gate must not record; notes for its report.

    Its numbers, names and dates were checked when it was read (Measurement.from_json),
    since the run that wrote it may be hostile. Here: its workload names a budget category,
    its figures agree with each other and with the intensity source they name, its dates lie
    within the measured workflow run (`run`, from the event), and its energy is physically
    possible (check_energy). Raises InputError: one line naming the file, the field and what.
    """
    if not CATEGORY.fullmatch(m.run.workload):
        raise _refused(path, "run.workload", f"{_quote(m.run.workload)} is not a workload name")
    check_sums(m, path)
    notes = check_intensity(m, path)
    check_times(m, path, run)
    check_energy(m, path)
    return notes


def _refused(path: Path, field: str, what: str) -> InputError:
    line = f"{_quote_path(path)}: {field}: {what}"
    return InputError(line.replace("\r", "\\r").replace("\n", "\\n"))


def _quote(text: str, most: int = 40) -> str:
    """Text for a one-line refusal: repr (so no newline, no control character), cut short."""
    shown = repr(text[: most + 1])
    return shown if len(shown) <= most else shown[: most - 3] + "..."


def _quote_path(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() and len(text) <= 200 else _quote(text, 200)


def _num(x: float) -> str:
    return f"{x:.6g}"


def _close(a: float, b: float, abs_tol: float = 0.0) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=abs_tol)


def check_sums(m: Measurement, path: Path) -> None:
    """energy_kwh.total is cpu + gpu + ram; emissions_kg is total x pue x intensity / 1000."""
    energy = m.energy_kwh
    parts = energy.cpu + energy.gpu + energy.ram
    if not _close(energy.total, parts, abs_tol=1e-15):
        raise _refused(
            path,
            "energy_kwh.total",
            f"{_num(energy.total)} kWh is not cpu + gpu + ram ({_num(parts)} kWh)",
        )
    kg = units.emissions_kg(energy.total, m.pue, m.intensity_g_per_kwh)
    if not _close(m.emissions_kg, kg, abs_tol=ABS_TOL_KG):
        raise _refused(
            path,
            "emissions_kg",
            f"{_num(m.emissions_kg)} kg does not follow from the artifact's own energy, PUE and "
            f"intensity ({_num(energy.total)} kWh x {_num(m.pue)} x "
            f"{_num(m.intensity_g_per_kwh)} g/kWh = {_num(kg)} kg)",
        )


def check_intensity(m: Measurement, path: Path) -> tuple[str, ...]:
    """The intensity is what the source it names gives.

    "configured: X gCO2e/kWh" must be X. With a codecarbon source the figure must be what
    co2gate.intensity resolves for the artifact's own `location` with codecarbon's data (the
    wording of the source is co2gate's and may differ between its versions; the figure may
    not); when it names another codecarbon version than the one here, that data
    is not at hand and a note says the figure was not checked (it is never recorded: the
    companion prices the energy with this repository's own location). Other sources (a
    codecarbon CSV's own figures) are only held to emissions_kg's consistency.
    """
    source = m.intensity_source
    configured = _CONFIGURED.fullmatch(source)
    if configured:
        try:
            named = float(configured.group(1))
        except ValueError:
            named = math.nan
        if not _close(m.intensity_g_per_kwh, named):
            raise _refused(
                path,
                "intensity_g_per_kwh",
                f"{_num(m.intensity_g_per_kwh)} is not the {_quote(source)} it names",
            )
        return ()
    cc = _CODECARBON.match(source)
    if not cc:
        return ()
    from importlib.metadata import version

    here = version("codecarbon")
    if cc.group(1) != here:
        return (
            f"the artifact's intensity names codecarbon {cc.group(1)}, not {here} as here: "
            "not checked against that data (it is not used: see how the run was priced)",
        )
    place = m.location
    if place.cloud_provider or place.cloud_region:
        where = Location(cloud=f"{place.cloud_provider or ''}:{place.cloud_region or ''}")
    else:
        where = Location(country=place.country_iso_code or None, region=place.region or None)
    try:
        expected = intensity.resolve(where)
    except LocationError as e:
        raise _refused(path, "location", f"not a place in codecarbon's data ({e})") from None
    if not _close(m.intensity_g_per_kwh, expected.g_per_kwh):
        raise _refused(
            path,
            "intensity_g_per_kwh",
            f"{_num(m.intensity_g_per_kwh)} is not the {_num(expected.g_per_kwh)} g/kWh that "
            f"codecarbon's data gives for the artifact's location ({_quote(expected.source, 80)})",
        )
    return ()


def check_times(m: Measurement, path: Path, run: WorkflowRun | None) -> None:
    """duration_s fits between started_at and ended_at, and both lie within the measured
    workflow run as the event dates it (created, last updated), give or take CLOCK_SKEW_S.

    The run's creation is its first attempt's: a re-run of failed jobs keeps the artifacts
    of the jobs that passed the first time.
    """
    started, ended = m.run.started_at, m.run.ended_at
    span = (ended - started).total_seconds()
    if span < 0:
        raise _refused(path, "run.ended_at", f"{_num(-span)} s before run.started_at")
    # duration_s is a monotonic clock's, the dates a wall clock's cut to the millisecond
    if m.run.duration_s > span * 1.01 + 1.0:
        raise _refused(
            path,
            "run.duration_s",
            f"{_num(m.run.duration_s)} s is longer than run.started_at to run.ended_at "
            f"({_num(span)} s)",
        )
    if run is None:
        return
    skew = timedelta(seconds=CLOCK_SKEW_S)
    if run.created_at is not None and started < run.created_at - skew:
        raise _refused(
            path,
            "run.started_at",
            f"{started.isoformat()} is before workflow run {run.run_id} was created "
            f"({run.created_at.isoformat()})",
        )
    if run.updated_at is not None and ended > run.updated_at + skew:
        raise _refused(
            path,
            "run.ended_at",
            f"{ended.isoformat()} is after workflow run {run.run_id} ended "
            f"({run.updated_at.isoformat()})",
        )


def gpu_power_w(name: str) -> float:
    """A listed GPU's board power from co2gate.gpus, else UNKNOWN_GPU_W."""
    try:
        return gpus.lookup(name).board_power_w
    except gpus.UnknownGpu:
        return UNKNOWN_GPU_W


def check_energy(m: Measurement, path: Path) -> None:
    """Refuse energy no hardware the artifact lists could draw in its duration.

    The bound, per component, over duration_s in hours, with a margin of ENERGY_MARGIN (2x):
    - each listed GPU: its board power (co2gate.gpus' table; UNKNOWN_GPU_W, 1,500 W, for a
      name the table does not know) x hours x 2;
    - energy_kwh.gpu: the sum of those over the listed GPUs (none listed: 0 kWh);
    - energy_kwh.cpu + ram: CPU_RAM_W (4,000 W, a 4-socket server with 2 TB of RAM, already
      doubled) x hours x 2.
    So the total is at most 2 x hours x (sum of the GPUs' board power + 4,000 W) / 1000 kWh,
    a run shorter than MIN_WINDOW_S (1 s) counted as lasting that long.
    A measured run draws less than its hardware's maximum; the margin covers what a
    measurement adds (NVML's counter steps, extrapolation of a late-started meter).
    """
    hours = max(m.run.duration_s, MIN_WINDOW_S) / units.SECONDS_PER_HOUR
    during = fmt.duration(m.run.duration_s)
    board = 0.0
    for i, gpu in enumerate(m.gpus):
        watts = gpu_power_w(gpu.name)
        board += watts
        most = units.watt_hours_to_kwh(watts, hours) * ENERGY_MARGIN
        if gpu.energy_kwh > most:
            raise _refused(
                path,
                f"gpus[{i}].energy_kwh",
                f"{_num(gpu.energy_kwh)} kWh in {during} is more than {_quote(gpu.name)} can "
                f"draw ({_num(watts)} W, x{ENERGY_MARGIN:g}: {_num(most)} kWh)",
            )
    energy = m.energy_kwh
    most = units.watt_hours_to_kwh(board, hours) * ENERGY_MARGIN
    if energy.gpu > most:
        listed = f"the {len(m.gpus)} GPU(s) listed" if m.gpus else "no GPU listed in gpus"
        raise _refused(
            path,
            "energy_kwh.gpu",
            f"{_num(energy.gpu)} kWh in {during} is more than {listed} can draw ({_num(most)} kWh)",
        )
    most = units.watt_hours_to_kwh(CPU_RAM_W, hours) * ENERGY_MARGIN
    if energy.cpu + energy.ram > most:
        raise _refused(
            path,
            "energy_kwh.cpu",
            f"{_num(energy.cpu)} kWh and ram {_num(energy.ram)} kWh in {during} are more "
            f"than a server's CPUs and RAM can draw ({_num(CPU_RAM_W)} W, "
            f"x{ENERGY_MARGIN:g}: {_num(most)} kWh)",
        )


def priced(
    adopted: Sequence[Adopted], budget: Budget, notes: Sequence[Sequence[str]] = ()
) -> list[Adopted]:
    """Each adopted artifact with its energy priced at this repository's own location and
    PUE (the base's budget file, else co2gate's default resolution), never the artifact's.
    A provider-priced artifact is re-priced the same way, at codecarbon's figure: its
    intensity is held to emissions_kg's consistency only, and its series is dropped.

    `notes` (per artifact, from check_artifact) join each one's notes.
    """
    price = intensity.resolve(budget.location)
    pue = budget.location.pue
    out = []
    for i, a in enumerate(adopted):
        m = a.measurement
        kg = units.emissions_kg(m.energy_kwh.total, pue, price.g_per_kwh)
        repriced = dataclasses.replace(
            m,
            pue=pue,
            intensity_g_per_kwh=price.g_per_kwh,
            intensity_source=price.source,
            location=place_of(price),
            emissions_kg=kg,
            emissions_kg_range=uncertainty.emissions_bounds(
                m.energy_bounds.total, pue, price.g_per_kwh
            ),
            per_request_g=kg * 1000.0 / m.requests if m.requests else None,
            # A live provider's series and marginal figure are the artifact's: dropped, never
            # re-fetched here (the untrusted run's times would choose what is asked for).
            grid=None,
        )
        repriced = dataclasses.replace(repriced, sci=sci(repriced, budget.embodied))
        said = (
            f"priced here, not by the artifact: its energy {fmt.energy(m.energy_kwh.total)} "
            f"x PUE {pue:g} x {price.g_per_kwh:.4g} g/kWh ({price.source}) from "
            f"{budget.source} = {fmt.mass(kg)}; the artifact's own figure "
            f"({fmt.mass(m.emissions_kg)} at PUE {m.pue:g} and "
            f"{m.intensity_g_per_kwh:.4g} g/kWh) was checked for consistency only"
        )
        extra = tuple(notes[i]) if i < len(notes) else ()
        out.append(Adopted(repriced, (*a.notes, said, *extra)))
    return out


def adopt(
    run: WorkflowRun,
    measurements: Sequence[Measurement],
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> list[Adopted]:
    """Each artifact's measurement with its `ci` block replaced by the trusted one.

    Pull requests are looked up once however many files name them.
    """
    lookup = lookup or pull_lookup(run.repository, env)
    adopted = []
    for m in measurements:
        claimed = m.ci.to_json() if m.ci is not None else None
        trusted = trusted_ci(run, claimed, env, lookup=lookup)
        ci = CiInfo.from_context(trusted.ci)
        adopted.append(Adopted(dataclasses.replace(m, ci=ci), trusted.notes))
    return adopted


@dataclass(frozen=True)
class Trusted:
    """The `ci` block to gate an artifact under, and notes for its report."""

    ci: dict[str, Any]
    notes: tuple[str, ...] = ()


# Pull request number -> its heads; raises api.GitHubError when GitHub cannot say.
PullLookup = Callable[[int], "PullHeads"]


def trusted_ci(
    run: WorkflowRun,
    claimed: Mapping[str, Any] | None,
    env: Mapping[str, str],
    *,
    lookup: PullLookup | None = None,
) -> Trusted:
    """The `ci` block of the measured run: the event's facts, and a verified pull request.

    `claimed` is the artifact's own `ci` block. Only its job name is taken (a name in the
    ledger key, as the measured job wrote it); its pull request number is a candidate,
    after the event's own, and is believed only if GitHub says that pull request's head is
    the measured commit, in the measured run's head repository, and its base is this
    repository. Unverified, the run has no pull request (no comment) and a note says why.
    """
    claimed = claimed or {}
    lookup = lookup or pull_lookup(run.repository, env)
    problems: list[str] = []
    pull: PullHeads | None = None
    if run.is_pull_request:
        wanted = list(dict.fromkeys([*run.pull_numbers, claimed.get("pr")]))
        candidates = [n for n in wanted if isinstance(n, int) and is_pr_number(n)]
        candidates = candidates[:_MAX_CANDIDATES]
        for number in candidates:
            pull, problem = _verify(run, number, lookup)
            if pull is not None:
                break
            problems.append(problem)
        if not candidates:
            problems.append("the measured run names no pull request")
    notes = [] if pull is not None else [f"no PR comment: {p}" for p in problems]
    if pull is not None:
        ref: str | None = f"refs/pull/{pull.number}/merge"
    elif not run.is_pull_request and run.head_repository == run.repository and run.head_branch:
        ref = f"refs/heads/{run.head_branch}"
    else:
        ref = None  # never a fork's branch name as if it were one of ours
    job = claimed.get("job")
    source = "a pull request" if run.is_pull_request else f"a {run.event} event"
    notes.insert(
        0,
        f"measured in workflow run {run.run_id} of {source} from {run.head_repository}: "
        f"the energy is the {'PR' if run.is_pull_request else 'measured'} job's own",
    )
    ci = {
        "provider": "github",
        "repository": run.repository,
        "sha": run.head_sha,
        "ref": ref,
        "head_ref": pull.head_ref if pull else None,
        "base_ref": pull.base_ref if pull else None,
        "base_sha": pull.base_sha if pull else None,
        "event": run.event,
        "pr": pull.number if pull else None,
        "workflow": run.workflow,
        "job": job if isinstance(job, str) else "",
        "run_id": run.run_id,
        "run_attempt": run.run_attempt,
        "server_url": env.get("GITHUB_SERVER_URL", "https://github.com"),
        "head_repository": run.head_repository,
    }
    return Trusted(ci, tuple(notes))


def pull_lookup(repository: str, env: Mapping[str, str]) -> PullLookup:
    """GET /repos/{repository}/pulls/{n} with the job's token, each number asked once."""
    from co2gate.github.api import GitHubError
    from co2gate.github.comments import pull_request_heads

    token = github_token(env)
    api_url = env.get("GITHUB_API_URL", "https://api.github.com")
    seen: dict[int, PullHeads | GitHubError] = {}

    def lookup(number: int) -> PullHeads:
        if number not in seen:
            if not token:
                seen[number] = GitHubError("no GITHUB_TOKEN to ask GitHub with")
            else:
                try:
                    seen[number] = pull_request_heads(
                        repository, number, token=token, api_url=api_url
                    )
                except GitHubError as e:
                    seen[number] = e
        found = seen[number]
        if isinstance(found, Exception):
            raise found
        return found

    return lookup


def _verify(run: WorkflowRun, number: int, lookup: PullLookup) -> tuple[PullHeads | None, str]:
    """The pull request if it is the measured run's, else None and why not."""
    from co2gate.github.api import GitHubError

    try:
        pull = lookup(number)
    except GitHubError as e:
        return None, f"PR #{number} could not be verified ({e})"
    if (pull.base_repository or "").casefold() != run.repository.casefold():
        return None, f"PR #{number} is a pull request into {pull.base_repository}, not this one"
    if pull.head_sha != run.head_sha:
        return None, (
            f"PR #{number}'s head is {pull.head_sha[:7]}, not the measured commit "
            f"{run.head_sha[:7]}: the artifact is not from that pull request"
        )
    if (pull.head_repository or "").casefold() != run.head_repository.casefold():
        return None, (
            f"PR #{number} comes from {pull.head_repository or 'a deleted repository'}, "
            f"not from {run.head_repository}, where the measured run's commit is"
        )
    return pull, ""
