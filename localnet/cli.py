"""``python -m localnet``: run a localnet in the foreground until SIGINT or SIGTERM.

    python -m localnet --port 8899 \\
        --program <PROGRAM_ID or program-keypair.json>=path/to/program.so \\
        --authority path/to/authority.json --ready-file /tmp/localnet.url

Programs are deployed through the BPF Upgradeable Loader before the server accepts
requests, with ``--authority`` as their upgrade authority (a fresh, unsaved keypair
when omitted: the programs can then not be upgraded). The URL is printed on stdout
once the server is ready, and written to ``--ready-file`` when given, so scripts can
wait for that file instead of polling the port.

``--url <RPC URL> --clone <ADDRESS> --clone-upgradeable-program <PROGRAM_ID>`` (each
repeatable) copy accounts, and programs with their ProgramData, from a cluster before
serving, as ``solana-test-validator`` does (``localnet.clone``). ``RUNBOOKS_SQUADS_SO``
loads a Squads v4 binary at the Squads program id.

``--cluster-like`` runs it as a cluster behaves (``localnet.cluster_mode``): slots on a
clock (``--slot-ms``), transactions landing a slot or two later, some dropped
(``--drop-rate``), lagging commitment, blockhash expiry, a request rate limit (``--rps``,
429 + Retry-After) and capped getProgramAccounts answers; ``--seed`` fixes its choices.
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
from localnet import clone
from localnet.chain import Localnet
from localnet.cluster_mode import ClusterBehaviour
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


def _slot_ms(text: str) -> int:
    try:
        ms = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of ms") from None
    if not 1 <= ms <= 60_000:
        raise argparse.ArgumentTypeError(f"{ms} ms: use 1..60000 (a cluster's slot is ~400)")
    return ms


def _drop_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not a fraction: use 0..1 (0.05: 5 %)")
    return rate


def _rps(text: str) -> float:
    try:
        rps = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < rps <= 1e6:
        raise argparse.ArgumentTypeError(f"{text}: use a number of requests a second > 0")
    return rps


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"{seed}: use a whole number >= 0")
    return seed


_CLUSTER_OPTIONS = (
    ("--slot-ms", "slot_ms"),
    ("--drop-rate", "drop_rate"),
    ("--rps", "rps"),
    ("--seed", "seed"),
)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """``--cluster-like`` and its tuning options (shared with ``runbooks demo``/``up``)."""
    parser.add_argument(
        "--cluster-like",
        action="store_true",
        help="behave like a cluster: slots on a clock, transactions landing later or "
        "dropped, lagging commitment, blockhash expiry, a rate limit (429), capped scans",
    )
    parser.add_argument(
        "--slot-ms", type=_slot_ms, help="with --cluster-like: slot length in ms (400)"
    )
    parser.add_argument(
        "--drop-rate",
        type=_drop_rate,
        help="with --cluster-like: fraction of sent transactions silently dropped (0.05)",
    )
    parser.add_argument(
        "--rps", type=_rps, help="with --cluster-like: requests a second before 429s (100)"
    )
    parser.add_argument(
        "--seed", type=_seed, help="with --cluster-like: seed of landing and drop choices (0)"
    )


def cluster_behaviour(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> ClusterBehaviour | None:
    """The ``ClusterBehaviour`` the options ask for; None without ``--cluster-like``."""
    given = [flag for flag, name in _CLUSTER_OPTIONS if getattr(args, name) is not None]
    if not args.cluster_like:
        if given:
            parser.error(f"{given[0]} only applies with --cluster-like; add --cluster-like")
        return None
    options: dict[str, object] = {}
    if args.slot_ms is not None:
        options["slot_seconds"] = args.slot_ms / 1000
    if args.drop_rate is not None:
        options["drop_fraction"] = args.drop_rate
    if args.rps is not None:
        options["requests_per_second"] = args.rps
    if args.seed is not None:
        options["seed"] = args.seed
    return ClusterBehaviour(**options)  # type: ignore[arg-type]


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
        "(not a validator: no gossip, consensus or votes; one slot per transaction, "
        "or slots on a clock with --cluster-like).",
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
    parser.add_argument(
        "--url",
        help="RPC URL of the cluster --clone and --clone-upgradeable-program copy from",
    )
    parser.add_argument(
        "--clone",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="copy this account from --url before serving (repeatable)",
    )
    parser.add_argument(
        "--clone-upgradeable-program",
        action="append",
        default=[],
        metavar="PROGRAM_ID",
        help="copy this upgradeable program and its ProgramData from --url (repeatable)",
    )
    add_cluster_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def _write_ready_file(path: Path, url: str) -> None:
    # Write then rename, so a watcher never reads a half-written URL.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    behaviour = cluster_behaviour(args, parser)
    if (args.clone or args.clone_upgradeable_program) and not args.url:
        parser.error("--clone and --clone-upgradeable-program copy from --url; add --url")
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
        net = Localnet(behaviour)
        for program, so_path in programs:
            try:
                elf = so_path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read program {so_path}: {exc.strerror}") from None
            program_id = net.deploy_upgradeable(program, elf, authority)
            logger.info(
                "program %s from %s (upgrade authority %s)", program_id, so_path, authority.pubkey()
            )
        if args.url:
            cloned = net.clone_from(
                args.url, accounts=args.clone, programs=args.clone_upgradeable_program
            )
            logger.info("cloned %d accounts from %s", len(cloned), clone.where(args.url))
        if behaviour is not None:
            logger.info("cluster-like: %s", behaviour)
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
