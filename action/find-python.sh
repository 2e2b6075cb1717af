#!/usr/bin/env bash
# Find a Python >= 3.10 to install co2gate with: $CO2GATE_PYTHON if given, else python3 or
# python on PATH. Writes the step outputs `python` (its path) and `found` (true/false).
set -euo pipefail

ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; }
for candidate in ${CO2GATE_PYTHON:-} python3 python; do
  path=$(command -v "$candidate" || true)
  if [[ -n "$path" ]] && ok "$path"; then
    echo "Python for co2gate: $path ($("$path" --version 2>&1))"
    { echo "python=$path"; echo "found=true"; } >>"$GITHUB_OUTPUT"
    exit 0
  fi
done
if [[ -n "${CO2GATE_PYTHON:-}" ]]; then
  echo "::error title=co2gate::python input '$CO2GATE_PYTHON' is not a Python >= 3.10"
  exit 2
fi
echo "No Python >= 3.10 on PATH: actions/setup-python will provide one (PATH unchanged)"
echo "found=false" >>"$GITHUB_OUTPUT"
