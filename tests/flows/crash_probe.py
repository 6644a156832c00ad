"""A served flow that writes its process id and waits: the run the crash test kills.

Run as a script, it serves the flow as deployment ``probe`` (as `make up` serves the
runbooks), with the heartbeat frequency of the environment."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from prefect import flow, serve

FLOW_NAME = "crash-probe"


@flow(name=FLOW_NAME, persist_result=False)
def crash_probe(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)  # killed long before


if __name__ == "__main__":
    serve(crash_probe.to_deployment(name="probe"), print_starting_message=False)
    sys.exit(0)
