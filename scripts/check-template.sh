#!/usr/bin/env bash
# Checks the SAM application the way a deploy would meet it: cfn-lint, `sam validate` (the SAM
# translator), `sam validate --lint`, then `sam build` without a container. Each catches mistakes
# the others miss. Prints one line per step; on a failure, the failing step's output, and exits 1.
#
#   TOOLS=path/to/bin   where cfn-lint and sam live (default .venv-tools/bin: the SAM CLI pins its own
#                       boto3 and pydantic, so it has an environment of its own)
#   BUILD_DIR=dir       where `sam build` writes (default .aws-sam/build)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOOLS=${TOOLS:-.venv-tools/bin}
BUILD_DIR=${BUILD_DIR:-.aws-sam/build}
REGION=us-east-1
# The functions' runtime, as template.yaml's Globals give it (python3.13): `sam build` needs that Python.
RUNTIME_PYTHON=$(sed -n 's/^    Runtime: \(python3\.[0-9]*\)$/\1/p' template.yaml)
RUNTIME_VERSION=${RUNTIME_PYTHON#python}
if [[ -z "$RUNTIME_PYTHON" ]]; then
  echo "FAIL  no '    Runtime: python3.N' line in template.yaml's Globals" >&2
  exit 1
fi
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

# True when $1 runs and is the runtime's Python with pip (pyenv's shims exist on PATH even when they fail).
is_runtime_python() {
  "$1" -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != sys.argv[1])' "$RUNTIME_VERSION" >/dev/null 2>&1 &&
    "$1" -m pip --version >/dev/null 2>&1
}

# The directory to put first on PATH so that `$RUNTIME_PYTHON` is a working Python of that version, as
# `sam build` needs to build the functions' code without a container. Looks on PATH, then in pyenv, then asks uv.
find_runtime_python_dir() {
  local candidate found
  if candidate=$(command -v "$RUNTIME_PYTHON") && is_runtime_python "$candidate"; then
    dirname "$candidate"
    return 0
  fi
  if command -v pyenv >/dev/null 2>&1; then
    while read -r candidate; do
      if [[ -n "$candidate" ]] && is_runtime_python "$candidate"; then
        dirname "$candidate"
        return 0
      fi
    done < <(ls -d "$(pyenv root)"/versions/"$RUNTIME_VERSION".*/bin/"$RUNTIME_PYTHON" 2>/dev/null | sort -rV)
  fi
  if command -v uv >/dev/null 2>&1 && found=$(uv python find "$RUNTIME_VERSION" 2>/dev/null); then
    candidate="$(dirname "$found")/$RUNTIME_PYTHON"
    if is_runtime_python "$candidate"; then
      dirname "$candidate"
      return 0
    fi
  fi
  return 1
}

step "cfn-lint" "$TOOLS/cfn-lint" template.yaml
# The member role each member account deploys (a StackSet): plain CloudFormation, no SAM.
step "cfn-lint member-role.yaml" "$TOOLS/cfn-lint" member-role.yaml
step "sam validate" "$TOOLS/sam" validate --template template.yaml --region "$REGION"
step "sam validate --lint" "$TOOLS/sam" validate --lint --template template.yaml --region "$REGION"

if ! python_dir=$(find_runtime_python_dir); then
  echo "FAIL  sam build: no working $RUNTIME_PYTHON with pip found (looked on PATH, in pyenv and with uv)." >&2
  echo "      Install Python $RUNTIME_VERSION, e.g. 'pyenv install $RUNTIME_VERSION' or 'uv python install $RUNTIME_VERSION', and run again." >&2
  exit 1
fi
export PATH="$python_dir:$PATH"

step "sam build ($("$RUNTIME_PYTHON" -c 'import platform; print(platform.python_version())') from $python_dir)" \
  "$TOOLS/sam" build --template template.yaml --build-dir "$BUILD_DIR"
step "layer ships bytecode" "$RUNTIME_PYTHON" scripts/check-layer-bytecode.py "$BUILD_DIR/CommonLayer/python"
