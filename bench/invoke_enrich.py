"""One invocation of the enrich handler in a fresh process, as Lambda runs it: the handler module, what it
imports, one SQS event. No moto, no local runner, no bench code is imported here, so that the process's
memory is the function's.

`python -m bench.invoke_enrich EVENT RESULT` reads the event from the file EVENT and writes to the file
RESULT the handler's response and the process's peak resident set. The environment is the function's
(bench.stack_process).
"""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "functions" / "enrich"


@dataclass
class Context:
    """The parts of Lambda's context object the handler and powertools read."""

    timeout_s: int = 300
    memory_limit_in_mb: int = 128
    function_name: str = "EnrichFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:EnrichFunction"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/EnrichFunction"
    log_stream_name: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        """The whole timeout: the bench is not cut short."""
        return self.timeout_s * 1000


def main(event_path: Path, response_path: Path) -> int:
    """Import the handler as Lambda does (its folder first on the path), invoke it once."""
    sys.path.insert(0, str(FUNCTION_DIR))
    app = importlib.import_module("app")

    response = app.lambda_handler(json.loads(event_path.read_text()), Context())
    response_path.write_text(json.dumps({"response": response, "peak_rss_kb": peak_rss_kb()}))
    return 0


def peak_rss_kb() -> int:
    """This process's peak resident set (VmHWM), in kB. Not getrusage's ru_maxrss: the kernel folds into
    it the memory of the process that forked this one, as it stood before this program was executed."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory is measured on Linux only")


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
