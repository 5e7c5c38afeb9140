#!/usr/bin/env bash
# Checks the SAM application the way a deploy would meet it: cfn-lint, `sam validate` (the SAM
# translator), `sam validate --lint`, then `sam build` without a container. Each catches mistakes
# the others miss. Prints one line per step; on a failure, the failing step's output, and exits 1.
#
#   TOOLS=path/to/bin   where cfn-lint and sam live (default .venv-tools/bin: the SAM CLI pins its own
#                       boto3 and pydantic, so it has an environment of its own)
#   BUILD_DIR=dir       where `sam build` writes (default .aws-sam/build)
#   VENV_PYTHON=python  the project's environment (default .venv/bin/python: `make template` sets it up)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS=${TOOLS:-.venv-tools/bin}
BUILD_DIR=${BUILD_DIR:-.aws-sam/build}
REGION=us-east-1
# The functions' runtime, as template.yaml's Globals give it (python3.13): `sam build` needs that Python.
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}
RUNTIME_PYTHON=$("$VENV_PYTHON" -c 'from vtriage_local.runtime_python import runtime_name; print(runtime_name())')
export SAM_CLI_TELEMETRY=0

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() {
  local name=$1
  shift
  if "$@" >"$log" 2>&1; then
    echo "ok    $name"
  else
    echo "FAIL  $name: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

for tool in cfn-lint sam; do
  if [[ ! -x "$TOOLS/$tool" ]]; then
    echo "FAIL  $TOOLS/$tool not found: install the SAM CLI and cfn-lint in their own environment," >&2
    echo "      e.g. python3 -m venv .venv-tools && .venv-tools/bin/pip install aws-sam-cli cfn-lint," >&2
    echo "      or set TOOLS to the directory that holds them" >&2
    exit 1
  fi
done

step "cfn-lint" "$TOOLS/cfn-lint" template.yaml
# The member role each member account deploys (a StackSet): plain CloudFormation, no SAM.
step "cfn-lint member-role.yaml" "$TOOLS/cfn-lint" member-role.yaml
step "sam validate" "$TOOLS/sam" validate --template template.yaml --region "$REGION"
step "sam validate --lint" "$TOOLS/sam" validate --lint --template template.yaml --region "$REGION"

# Where that Python is (PATH, pyenv, uv): vtriage_local.runtime_python, which the cold start benchmark
# uses too, looks, and says what to install when there is none.
if ! python_dir=$("$VENV_PYTHON" -m vtriage_local.runtime_python 2>"$log"); then
  echo "FAIL  sam build: $(cat "$log")" >&2
  exit 1
fi
export PATH="$python_dir:$PATH"

step "sam build ($("$RUNTIME_PYTHON" -c 'import platform; print(platform.python_version())') from $python_dir)" \
  "$TOOLS/sam" build --template template.yaml --build-dir "$BUILD_DIR"
step "layer ships bytecode" "$RUNTIME_PYTHON" scripts/check-layer-bytecode.py "$BUILD_DIR/CommonLayer/python"
