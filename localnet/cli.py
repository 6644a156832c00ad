"""``python -m localnet``: run a localnet in the foreground until SIGINT or SIGTERM.

    python -m localnet --port 8899 \\
        --program <PROGRAM_ID or program-keypair.json>=path/to/program.so \\
        --authority path/to/authority.json --ready-file /tmp/localnet.url

Programs are deployed through the BPF Upgradeable Loader before the server accepts
requests, with ``--authority`` as their upgrade authority (a fresh, unsaved keypair
when omitted: the programs can then not be upgraded). The URL is printed on stdout
once the server is ready, and written to ``--ready-file`` when given, so scripts can
wait for that file instead of polling the port.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from core.errors import InputError, RunbookError
from core.keys import load_keypair
from localnet.chain import Localnet
from localnet.server import LocalnetServer

logger = logging.getLogger("localnet")


def parse_program(spec: str) -> tuple[Keypair | Pubkey, Path]:
    """``PROGRAM_ID=path.so`` or ``PROGRAM_KEYPAIR.json=path.so``."""
    target, sep, so_path = spec.partition("=")
    if not sep or not target or not so_path:
        raise InputError(
            f"--program {spec!r}: expected PROGRAM_ID=path/to/program.so or "
            "path/to/program-keypair.json=path/to/program.so"
        )
    program: Keypair | Pubkey
    if Path(target).is_file():
        program = load_keypair(Path(target))
    else:
        try:
            program = Pubkey.from_string(target)
        except ValueError:
            raise InputError(
                f"--program {spec!r}: {target!r} is neither a base-58 program id nor an "
                "existing keypair file"
            ) from None
    return program, Path(so_path)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port: use 0..65535 (0: any free)")
    return port


def check_ready_file(path: Path) -> None:
    """Refuse a ready file that cannot be written, before anything starts."""
    if not path.parent.is_dir():
        raise InputError(
            f"--ready-file {path}: the folder {path.parent} does not exist; create it or "
            "name a file in an existing folder"
        )
    if path.is_dir():
        raise InputError(f"--ready-file {path} is a folder; name a file in it instead")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"--ready-file {path}: the folder {path.parent} is not writable")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localnet",
        description="A Solana JSON-RPC localnet on 127.0.0.1 backed by LiteSVM "
        "(not a validator: no gossip, consensus or votes; one slot per transaction).",
    )
    parser.add_argument("--port", type=_port, default=8899, help="port to listen on (0: any free)")
    parser.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="PROGRAM_ID_OR_KEYPAIR_JSON=PATH.so",
        help="deploy an upgradeable program before serving (repeatable)",
    )
    parser.add_argument(
        "--authority", type=Path, help="keypair file of the programs' upgrade authority"
    )
    parser.add_argument(
        "--ready-file", type=Path, help="write the server URL to this file once it is ready"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def _write_ready_file(path: Path, url: str) -> None:
    # Write then rename, so a watcher never reads a half-written URL.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.ready_file is not None:
            check_ready_file(args.ready_file)
        programs = [parse_program(spec) for spec in args.program]
        if args.authority is not None:
            authority = load_keypair(args.authority)
        else:
            authority = Keypair()
            if programs:
                logger.warning(
                    "no --authority given: the programs' upgrade authority is %s, whose "
                    "key is not saved, so they cannot be upgraded",
                    authority.pubkey(),
                )
        net = Localnet()
        for program, so_path in programs:
            try:
                elf = so_path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read program {so_path}: {exc.strerror}") from None
            program_id = net.deploy_upgradeable(program, elf, authority)
            logger.info(
                "program %s from %s (upgrade authority %s)", program_id, so_path, authority.pubkey()
            )
        server = LocalnetServer(net, port=args.port).start()
    except (RunbookError, OSError) as exc:
        print(f"localnet: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Signal handlers can only be installed from the main thread; elsewhere the caller
    # stops the process itself.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    try:
        if args.ready_file is not None:
            _write_ready_file(args.ready_file, server.url)
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        logger.info("localnet stopped")
    return 0
