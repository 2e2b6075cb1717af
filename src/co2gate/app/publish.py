"""Put a run's report where people look: report.md, the job summary, the sticky PR
comment, step outputs and annotations. Outside GitHub Actions only report.md is written."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from co2gate import budget as budgets
from co2gate import intensity, report
from co2gate.app import Outcome
from co2gate.budget import Gated
from co2gate.emissions import write_atomic
from co2gate.github import workflow
from co2gate.github.api import GitHubError
from co2gate.model import CiInfo, Measurement
from co2gate.runner import AfterCommand, Cancelled
from co2gate.tokens import github_token

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    template_dir: Path | None = None
    comment: bool = True  # on the PR, when there is one and the token may
    author: str | None = None  # the login whose comment is ours; None: the token's user
    after: AfterCommand | None = None  # a cancelled job skips the comment (network) at once


@dataclass
class Published:
    report: Path | None
    comment_urls: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # for stderr: annotations and notes


@dataclass(frozen=True)
class Run:
    measurement: Measurement
    gated: Gated | None = None  # None: measured, not gated


def publish(
    runs: Sequence[Run],
    budget: budgets.Budget | None,
    *,
    out_dir: Path,
    env: Mapping[str, str],
    options: Options,
) -> Published:
    """Render each run, write report.md, then the summary, the comments, outputs, annotations.

    Raises report.TemplateProblem (before anything is written) when a template fails.
    GitHub API errors never raise: they become a warning line and the gate still decides.
    """
    elsewhere = intensity.low_carbon()
    contexts = [report.context(r.measurement, r.gated, budget, elsewhere=elsewhere) for r in runs]
    bodies = [report.render("comment.md.j2", c, options.template_dir) for c in contexts]
    summaries = [report.render("summary.md.j2", c, options.template_dir) for c in contexts]
    path = out_dir / "report.md"
    done = Published(path)
    try:
        write_atomic(path, "\n---\n\n".join(bodies))
    except OSError as e:
        done.report = None
        done.lines.append(f"could not write {path}: {e.strerror or e}")
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    if not in_actions:
        return done
    _runner_file("the job summary", workflow.append_summary, "\n".join(summaries), env, done)
    if options.comment:
        for run, body in zip(runs, bodies, strict=True):
            if run.gated is not None:
                _comment(run.measurement, body, env, options, done)
    outputs = _outputs(runs, out_dir, done.comment_urls)
    _runner_file("the step outputs", workflow.write_outputs, outputs, env, done)
    for run in runs:
        if run.gated is not None:
            done.lines += _annotations(run.measurement, run.gated)
    return done


def _runner_file(
    what: str,
    write: Callable[[T, Mapping[str, str]], object],
    value: T,
    env: Mapping[str, str],
    done: Published,
) -> None:
    """Write one of the runner's files; a failure is a warning, never the verdict's business."""
    try:
        write(value, env)
    except OSError as e:
        done.lines.append(
            workflow.annotation(
                "warning", f"could not write {what}: {e.strerror or e}", title="co2gate"
            )
        )


def publish_into(
    outcome: Outcome,
    runs: Sequence[Run],
    budget: budgets.Budget | None,
    out_dir: Path,
    env: Mapping[str, str],
    options: Options,
) -> None:
    """publish(), its lines and report.md added to the outcome. Runs after every file of the
    measurement is written: a failure here costs the report, never the measurement or verdict."""
    try:
        done = publish(runs, budget, out_dir=out_dir, env=env, options=options)
    except report.TemplateProblem as e:
        outcome.lines.append(f"no report: {e}")
        return
    outcome.lines += done.lines
    if done.report is not None:
        outcome.files.append(done.report)
        outcome.lines.append(f"wrote {done.report}")


def _comment(
    m: Measurement, body: str, env: Mapping[str, str], options: Options, done: Published
) -> None:
    """Upsert the run's sticky comment on its PR; say why when there is none."""
    from co2gate.github.comments import pull_for_commit, upsert_comment  # PyGithub: only here

    ci = m.ci or CiInfo()
    token, repository = github_token(env), ci.repository or ""
    api_url = env.get("GITHUB_API_URL", "https://api.github.com")
    if not token or not repository:
        done.lines.append("no PR comment: no GITHUB_TOKEN (set the github-token input)")
        return
    try:
        with options.after.waiting() if options.after else contextlib.nullcontext():
            number = ci.pr
            if number is None and ci.event == "push" and ci.sha:
                number = pull_for_commit(repository, ci.sha, token=token, api_url=api_url)
            if number is None:
                return  # not a pull request, nor a push to one: the summary is the report
            posted = upsert_comment(
                repository,
                int(number),
                body,
                label=m.run.label,
                token=token,
                api_url=api_url,
                author=options.author,
            )
    except Cancelled as e:
        done.lines.append(f"no PR comment: the job was cancelled ({e})")
        return
    except GitHubError as e:
        if e.status == 403:
            done.lines.append(
                workflow.annotation(
                    "notice",
                    f"no PR comment: {e}. The report is in the job summary and the artifact; "
                    "for fork PRs see the README's workflow_run companion.",
                    title="co2gate",
                )
            )
        else:
            done.lines.append(
                workflow.annotation("warning", f"no PR comment: {e}", title="co2gate")
            )
        return
    done.comment_urls.append(posted.url)
    done.lines.append(f"PR comment {posted.action}: {posted.url}")


def _outputs(runs: Sequence[Run], out_dir: Path, urls: Sequence[str]) -> dict[str, str]:
    """The action's step outputs (README: Outputs); for several runs, the worst verdict and
    the sums."""
    outputs = {
        "emissions-kg": _number(sum(r.measurement.emissions_kg for r in runs)),
        "energy-kwh": _number(sum(r.measurement.energy_kwh.total for r in runs)),
        "report-dir": str(out_dir),
        "comment-url": urls[-1] if urls else "",
    }
    decisions = [r.gated.decision for r in runs if r.gated is not None]
    if decisions:
        last = decisions[-1]
        outputs |= {
            "verdict": budgets.worst(d.verdict for d in decisions).value,
            "category": last.category,
            "used-kg": _number(last.after_kg),
            "allocation-kg": _number(last.allocation_kg),
            "remaining-kg": _number(last.remaining_kg),
            "tier": last.tier.value,
        }
    return outputs


def _number(x: float) -> str:
    return f"{x:.6g}"


def _annotations(m: Measurement, gated: Gated) -> list[str]:
    """An ::error for a failed gate and a ::warning for a warning, with the figures."""
    d = gated.decision
    if d.verdict is budgets.Verdict.PASS:
        return []
    level: workflow.Level = "error" if d.verdict is budgets.Verdict.FAIL else "warning"
    headline = report.verdict_lines(d, ())[0]
    why = " ".join(d.reasons[1:])
    title = f"co2gate {d.verdict.value}: {m.run.label}"
    return [workflow.annotation(level, f"{headline}. {why}", title=title)]
