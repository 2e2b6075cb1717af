#!/usr/bin/env bash
# Run the `run` input under `co2gate run`, with the action's inputs as options.
# Every input arrives as an environment variable (never as ${{ }} text in a script).
set -euo pipefail

args=(run --out "$CO2GATE_OUT" --workload "$CO2GATE_WORKLOAD" --budget-file "$CO2GATE_BUDGET_FILE")
[[ -n "${CO2GATE_LABEL:-}" ]] && args+=(--label "$CO2GATE_LABEL")
[[ -n "${CO2GATE_REQUESTS:-}" ]] && args+=(--requests "$CO2GATE_REQUESTS")
[[ -n "${CO2GATE_UNITS:-}" ]] && args+=(--units "$CO2GATE_UNITS")
[[ -n "${CO2GATE_UNIT:-}" ]] && args+=(--unit "$CO2GATE_UNIT")
[[ -n "${CO2GATE_METRICS_FILE:-}" ]] && args+=(--metrics-file "$CO2GATE_METRICS_FILE")
[[ -n "${CO2GATE_TEMPLATE_DIR:-}" ]] && args+=(--template-dir "$CO2GATE_TEMPLATE_DIR")
[[ "${CO2GATE_COMMENT:-true}" == "true" ]] || args+=(--no-comment)
[[ "${CO2GATE_RECORD:-true}" == "true" ]] || args+=(--no-record)
[[ "${CO2GATE_PREFLIGHT:-false}" == "true" ]] && args+=(--preflight)
[[ -n "${CO2GATE_MAX_KG:-}" ]] && args+=(--max-kg "$CO2GATE_MAX_KG")

echo "report-dir=$CO2GATE_OUT" >>"$GITHUB_OUTPUT"
exec "$CO2GATE_BIN" "${args[@]}" -- bash -eo pipefail -c "$CO2GATE_RUN"
