#!/usr/bin/env bash
# Decide where co2gate's virtualenv and report go, the cache key and the artifact's name.
# Inputs (env): PYTHON, ACTION_PATH, ARTIFACT_NAME, LABEL, JOB_INDEX, JOB_TOTAL.
set -euo pipefail

version=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
# The installed tree depends on co2gate's own files, the interpreter (the venv links to it)
# and the machine.
digest=$("$PYTHON" - "$ACTION_PATH" <<'PY'
import hashlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
# The venv links to this interpreter: a different one, even of the same version, is another key.
files = [root / "pyproject.toml", *sorted((root / "src").rglob("*.py")),
         *sorted((root / "src").rglob("*.json")), *sorted((root / "templates").glob("*.j2"))]
h = hashlib.sha256(str(pathlib.Path(sys.executable).resolve()).encode())
for f in files:
    h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
print(h.hexdigest()[:16])
PY
)
key="co2gate-${RUNNER_OS:-os}-${RUNNER_ARCH:-arch}-py${version}-${digest}"
venv="${RUNNER_TEMP}/co2gate-venv-${digest}"

# upload-artifact v4 wants names unique within a workflow run: one per job, label and
# matrix leg.
name="${ARTIFACT_NAME}-${GITHUB_JOB}"
[[ -n "${LABEL:-}" ]] && name="${name}-${LABEL}"
[[ "${JOB_TOTAL:-1}" -gt 1 ]] && name="${name}-${JOB_INDEX}"
name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '-')
report="${RUNNER_TEMP}/${name}"

{
  echo "key=$key"
  echo "venv=$venv"
  echo "artifact=$name"
  echo "report-dir=$report"
} >>"$GITHUB_OUTPUT"
