"""The local stack in a process of its own: moto with the template's resources and the VirusTotal replay
server, so that a process measured beside it holds only what a Lambda function would.

`python -m bench.stack_process RECORDINGS API_KEY FUNCTION` prints one JSON line, the environment the
template's FUNCTION runs with in this stack, and serves until its standard input closes.
`stack_in_subprocess` runs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from vtriage_local.replay import ReplayServer
from vtriage_local.stack import REGION, LocalAws

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def stack_in_subprocess(
    recordings: Path, api_key: str, function: str = "EnrichFunction"
) -> Iterator[dict[str, str]]:
    """Start the stack process; yield the environment the function runs with in it (what template.yaml
    gives the function, the AWS endpoint, dummy credentials and VT_BASE_URL); stop it on exit."""
    with subprocess.Popen(
        [sys.executable, "-m", "bench.stack_process", str(recordings), api_key, function],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise RuntimeError(f"the stack process stopped before it was ready (exit {process.returncode})")
        try:
            yield json.loads(line)
        finally:
            process.stdin.close()
            process.wait(timeout=30)


def main(recordings: Path, api_key: str, function: str) -> int:
    """Serve the stack until standard input closes."""
    announce = sys.stdout
    with (
        ReplayServer(recordings, api_key=api_key) as replay,
        contextlib.redirect_stdout(io.StringIO()),
        LocalAws(vt_api_key=api_key, run_state_machines=False) as aws,
    ):
        spec = aws.functions[function]
        environment = {name: str(aws.resolve(value)) for name, value in spec.environment.items()}
        environment |= {
            "AWS_ENDPOINT_URL": aws.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "VT_BASE_URL": replay.base_url,
        }
        announce.write(json.dumps(environment) + "\n")
        announce.flush()
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
