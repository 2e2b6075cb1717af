"""Step outputs, job summary and annotations, read back the way the Actions runner reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from co2gate.github import workflow


def runner_outputs(text: str) -> dict[str, str]:
    """The runner's parser for $GITHUB_OUTPUT (actions/runner SetOutputFileCommand):
    `name=value` lines, or `name<<DELIM`, value lines, a line equal to DELIM."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            i += 1
            while lines[i] != delimiter:  # an unterminated block is an error in the runner
                value.append(lines[i])
                i += 1
            outputs[name] = "\n".join(value)
        else:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
        i += 1
    return outputs


def runner_unescape(data: str) -> str:
    """How the runner decodes a workflow command's message."""
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def runner_unescape_property(value: str) -> str:
    return runner_unescape(value.replace("%3A", ":").replace("%2C", ","))


def test_outputs_round_trip_through_the_runners_parser(tmp_path: Path) -> None:
    path = tmp_path / "output"
    path.write_text("earlier=step\n")  # what the step wrote before: kept
    hostile = "line one\nverdict=pass\nEOF\nco2gate_0\n"
    env = {"GITHUB_OUTPUT": str(path)}
    assert workflow.write_outputs({"verdict": "fail", "report": hostile, "empty": ""}, env)
    assert workflow.write_outputs({"emissions-kg": "0.0123"}, env)
    assert runner_outputs(path.read_text()) == {
        "earlier": "step",
        "verdict": "fail",
        "report": hostile,
        "empty": "",
        "emissions-kg": "0.0123",
    }


def test_delimiters_are_random_and_never_inside_the_value(tmp_path: Path) -> None:
    path = tmp_path / "output"
    workflow.write_outputs({"a": "x", "b": "x"}, {"GITHUB_OUTPUT": str(path)})
    first, second = (line.split("<<")[1] for line in path.read_text().splitlines() if "<<" in line)
    assert first != second and len(first) > 20


def test_nothing_is_written_outside_actions(tmp_path: Path) -> None:
    assert not workflow.write_outputs({"a": "b"}, {})
    assert not workflow.append_summary("# hi", {})
    assert list(tmp_path.iterdir()) == []


def test_summary_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("the command's own summary\n")
    env = {"GITHUB_STEP_SUMMARY": str(path)}
    workflow.append_summary("## co2gate\n\nfigures", env)
    assert path.read_text() == "the command's own summary\n## co2gate\n\nfigures\n"


def test_summary_stays_within_one_mib_cut_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_bytes(b"x" * 1000 + b"\n")
    line = "| a row with a multi-byte character: \u2588 |\n"
    workflow.append_summary(line * 40_000, {"GITHUB_STEP_SUMMARY": str(path)})
    data = path.read_bytes()
    assert len(data) <= workflow.SUMMARY_LIMIT
    text = data.decode("utf-8")  # never half a character
    assert text.endswith(workflow.CUT_NOTE)
    body = text[1001 : -len(workflow.CUT_NOTE)]
    assert set(body.splitlines()) == {line.rstrip("\n")}  # whole lines only


def test_a_full_summary_gets_nothing_more(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_bytes(b"x" * (workflow.SUMMARY_LIMIT - 3))
    workflow.append_summary("more", {"GITHUB_STEP_SUMMARY": str(path)})
    assert path.stat().st_size == workflow.SUMMARY_LIMIT - 3


@pytest.mark.parametrize(
    "message",
    ["100% over\nsecond line\r\n", "50%0A is not a newline", "::error::nested", "a,b:c"],
)
def test_annotations_survive_the_runners_unescaping(message: str) -> None:
    title = "co2gate fail: train, a:b 100%"
    line = workflow.annotation("error", message, title=title)
    assert "\n" not in line and "\r" not in line
    head, data = line[2:].split("::", 1)
    command, props = head.split(" ", 1)
    assert command == "error"
    key, value = props.split("=", 1)
    assert key == "title" and runner_unescape_property(value) == title
    assert "," not in value and ":" not in value  # a raw , or : would split the properties
    assert runner_unescape(data) == message


def test_annotation_without_title() -> None:
    assert workflow.annotation("warning", "50% used") == "::warning::50%25 used"


# ------------------------------------------------------------------ the action's inputs

ROOT = Path(__file__).resolve().parent.parent


def _gate_argv(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """The co2gate command line action/gate.sh builds from its environment, read back from a
    stand-in co2gate that writes its arguments one per line."""
    import os
    import subprocess

    bin_ = tmp_path / "co2gate"
    bin_.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >"$ARGV_FILE"\n')
    bin_.chmod(0o755)
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CO2GATE_BIN": str(bin_),
        "CO2GATE_OUT": "out",
        "CO2GATE_RUN": "true",
        "CO2GATE_WORKLOAD": "training",
        "CO2GATE_BUDGET_FILE": "b.yml",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "ARGV_FILE": str(tmp_path / "argv"),
    }
    subprocess.run(
        ["bash", str(ROOT / "action" / "gate.sh")], env=base | env, check=True, timeout=30
    )
    return (tmp_path / "argv").read_text().splitlines()


def test_units_unit_and_metrics_file_reach_the_cli_as_options(tmp_path: Path) -> None:
    hostile = "m.json; $(touch pwned) `id` \"'"
    argv = _gate_argv(
        tmp_path,
        {"CO2GATE_UNITS": "4096", "CO2GATE_UNIT": "tokens", "CO2GATE_METRICS_FILE": hostile},
    )
    at = argv.index("--units")
    assert argv[at : at + 4] == ["--units", "4096", "--unit", "tokens"]
    assert argv[argv.index("--metrics-file") + 1] == hostile  # one argument, never run
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_empty_inputs_add_no_options(tmp_path: Path) -> None:
    argv = _gate_argv(tmp_path, {"CO2GATE_UNITS": "", "CO2GATE_METRICS_FILE": ""})
    assert "--units" not in argv and "--unit" not in argv and "--metrics-file" not in argv


def test_every_new_input_goes_through_env_only() -> None:
    import yaml

    action = yaml.safe_load((ROOT / "action.yml").read_text())
    for name in ("units", "unit", "metrics-file"):
        assert action["inputs"][name]["default"] == ""
        assert action["inputs"][name]["description"]
    gate = next(s for s in action["runs"]["steps"] if s.get("id") == "gate")
    assert gate["env"]["CO2GATE_UNITS"] == "${{ inputs.units }}"
    assert gate["env"]["CO2GATE_UNIT"] == "${{ inputs.unit }}"
    assert gate["env"]["CO2GATE_METRICS_FILE"] == "${{ inputs.metrics-file }}"
    for step in action["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")
