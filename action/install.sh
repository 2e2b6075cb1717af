#!/usr/bin/env bash
# Install co2gate from the action's own checkout into a virtualenv of its own.
#
#   install.sh PYTHON VENV ACTION_PATH
#
# Leaves the caller's Python, PATH and site-packages alone. Uses uv when it can (a warm
# install takes about a second), else pip. Does nothing when VENV already works: its name
# carries a digest of co2gate's files and the interpreter (prepare.sh), so a VENV that
# actions/cache restored is this co2gate.
set -euo pipefail

python=$1 venv=$2 src=$3

if "$venv/bin/co2gate" --version >/dev/null 2>&1; then
  echo "$("$venv/bin/co2gate" --version): restored from the cache"
  exit 0
fi
rm -rf "$venv"

tools="${venv}-tools"
uv=""
if [[ -z "${CO2GATE_NO_UV:-}" ]]; then  # CO2GATE_NO_UV=1: pip only
  uv=$(command -v uv || true)
fi
if [[ -z "$uv" && -z "${CO2GATE_NO_UV:-}" ]] && "$python" -m pip install --quiet --disable-pip-version-check --target "$tools" uv >/dev/null 2>&1; then
  uv="$tools/bin/uv"
fi

if [[ -n "$uv" ]] && "$uv" venv --quiet --python "$python" "$venv" \
  && "$uv" pip install --quiet --python "$venv/bin/python" "$src"; then
  how=uv
else
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$src"
  how=pip
fi
rm -rf "$tools"
# Compile the report's templates beside them, as pip compiles modules (report.Compiled):
# a speed-up only, so a failure here is none.
"$venv/bin/python" -c 'from co2gate.report import compile_templates; compile_templates()' \
  >/dev/null 2>&1 || true
echo "co2gate $("$venv/bin/co2gate" --version | sed 's/.*version //') installed with $how into $venv"
