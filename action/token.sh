#!/usr/bin/env bash
# Hand the token to co2gate in a file, not in the gate step's environment: the measured
# command can read its own environment and every ancestor's /proc/<pid>/environ, so no
# process above it may hold the token there. This step runs (and ends) before the gate step.
# Input (env): CO2GATE_GITHUB_TOKEN. Output: `file`, a 0600 file under $RUNNER_TEMP that
# co2gate reads and deletes before it starts the command; empty when there is no token.
set -euo pipefail
umask 077

token=${CO2GATE_GITHUB_TOKEN:-}
# A secret pasted with a newline: strip surrounding whitespace, as co2gate does.
token=${token#"${token%%[![:space:]]*}"}
token=${token%"${token##*[![:space:]]}"}
if [[ -z "$token" ]]; then
  echo "file=" >>"$GITHUB_OUTPUT"
  exit 0
fi
echo "::add-mask::$token"
file=$(mktemp "${RUNNER_TEMP:?}/co2gate-token.XXXXXXXX")
printf '%s' "$token" >"$file"
echo "file=$file" >>"$GITHUB_OUTPUT"
