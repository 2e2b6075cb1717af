"""The measured command of the act workflow: it looks for the job's GitHub token everywhere
a command can read an environment and fails the job when it finds it.

The token's SHA-256 comes in CO2GATE_TEST_TOKEN_SHA256 (the token itself is what must not
arrive). Checked: this process's environment, and /proc/<pid>/environ of every ancestor up
to the test's own process (CO2GATE_TEST_STOP_PID), for a token variable or the token's value;
and $RUNNER_TEMP for a token file co2gate should have deleted.
"""

import hashlib
import os
import sys
from pathlib import Path

NAMES = {"GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN"}
# nektos/act sets the inputs of a composite action as INPUT_* in every step's environment;
# GitHub's runner does not (the field notes): an act-only path the Action cannot close in
# its ancestors. co2gate still drops it from the command's own environment.
ACT_ONLY = "INPUT_GITHUB-TOKEN"
WANTED = os.environ["CO2GATE_TEST_TOKEN_SHA256"]
STOP = int(os.environ.get("CO2GATE_TEST_STOP_PID", "1"))


def leaks(pairs: list[tuple[str, str]]) -> list[str]:
    found = []
    for name, value in pairs:
        digest = hashlib.sha256(value.strip().encode()).hexdigest()
        if name in NAMES or (name == "CO2GATE_TOKEN_FILE" and Path(value).exists()):
            found.append(name)
        elif digest == WANTED:
            found.append(f"{name} (the token's value)")
    return found


def environ_of(pid: int) -> list[tuple[str, str]]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return [tuple(x.decode(errors="replace").partition("=")[::2]) for x in raw.split(b"\0") if x]


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


problems = [f"own environment: {x}" for x in leaks(list(os.environ.items()))]
pid, walked = os.getppid(), 0
while pid > 1 and pid != STOP:
    pairs = [(k, v) for k, v in environ_of(pid) if k != ACT_ONLY]
    problems += [f"/proc/{pid}/environ: {x}" for x in leaks(pairs)]
    pid, walked = parent_of(pid), walked + 1
temp = Path(os.environ.get("RUNNER_TEMP", "/nonexistent"))
problems += [f"token file left: {p}" for p in temp.glob("co2gate-token.*")]
if problems:
    sys.exit("token within reach: " + "; ".join(problems))
print(f"trained under act; no token in reach ({walked} ancestors read)")
# What a training script leaves for --metrics-file (the action's metrics-file input).
Path(os.environ["RUNNER_TEMP"], "act-metrics.json").write_text('{"val_loss": 0.25}')
