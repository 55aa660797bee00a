"""The `musicgen` command: generate music on the Triton server and save it as WAV.

    musicgen text "a calm piano melody" --out calm.wav --seed 42
    musicgen health --protocol grpc

Exit codes: 0 ok, 1 the WAV could not be written, 2 bad arguments, 3 server unreachable or not
ready, 4 the server returned an error. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .api import (
    DEFAULT_PORTS,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    MusicClient,
    MusicServiceError,
    ServerUnavailableError,
    save_wav,
)
from .interface import GUIDANCE_RANGE, LENGTH_RANGE, STEPS_RANGE, TEXT2MUSIC, ParameterRange

EXIT_OK = 0
EXIT_WRITE_FAILED = 1
EXIT_USAGE = 2  # also what argparse exits with on a syntax error
EXIT_UNAVAILABLE = 3
EXIT_SERVER_ERROR = 4
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C

PROG = "musicgen"


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _range_help(what: str, limits: ParameterRange) -> str:
    return f"{what}, {limits.minimum:g} to {limits.maximum:g} (server default {limits.default:g})"


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand per served model family, each taking the connection options."""
    connection = argparse.ArgumentParser(add_help=False)
    server = connection.add_argument_group("server")
    server.add_argument(
        "--url",
        metavar="HOST:PORT",
        help="Triton address (default 127.0.0.1:%d for http, 127.0.0.1:%d for grpc)"
        % (DEFAULT_PORTS["http"], DEFAULT_PORTS["grpc"]),
    )
    server.add_argument("--protocol", choices=PROTOCOLS, default="http", help="default: %(default)s")
    server.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help="seconds to wait for each server answer (default %(default)g)",
    )

    parser = argparse.ArgumentParser(prog=PROG, description="Generate music with the Triton text-to-music server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = commands.add_parser("text", parents=[connection], help="generate music from a text prompt")
    text.add_argument("prompt", help="what the music should sound like")
    text.add_argument("--out", "-o", type=Path, default=Path("musicgen.wav"), help="WAV file to write (default %(default)s)")
    text.add_argument("--negative", metavar="TEXT", help="what the music should not sound like")
    text.add_argument("--steps", type=int, metavar="N", help=_range_help("denoising steps", STEPS_RANGE))
    text.add_argument("--length", type=float, metavar="S", help=_range_help("clip length in seconds", LENGTH_RANGE))
    text.add_argument("--guidance", type=float, metavar="G", help=_range_help("guidance scale", GUIDANCE_RANGE))
    text.add_argument("--seed", type=int, help="random seed; without one the server draws one, printed afterwards")
    text.set_defaults(run=_run_text)

    health = commands.add_parser("health", parents=[connection], help="show whether the server and models are ready")
    health.set_defaults(run=_run_health)
    return parser


def _client(args: argparse.Namespace) -> MusicClient:
    return MusicClient(args.url, args.protocol, args.timeout)


def _run_text(args: argparse.Namespace) -> int:
    # Fail before spending a generation on a destination that cannot be written.
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name")
    with _client(args) as client:
        result = client.text_to_music(
            args.prompt,
            negative_prompt=args.negative,
            num_inference_steps=args.steps,
            audio_length_in_s=args.length,
            guidance_scale=args.guidance,
            seed=args.seed,
        )
    try:
        path = save_wav(args.out, result.audio, result.sampling_rate)
    except OSError as exc:
        _error(f"cannot write {args.out}: {exc}")
        return EXIT_WRITE_FAILED
    print(f"wrote {path}: {result.duration_s:.2f} s at {result.sampling_rate} Hz, seed {result.seed}")
    return EXIT_OK


def _run_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.health((TEXT2MUSIC,))
        print(f"server {client.url} ({client.protocol}): {_readiness(report.server_ready)}")
    for model, ready in report.models.items():
        print(f"model {model}: {_readiness(ready)}")
    return EXIT_OK if report.ready else EXIT_UNAVAILABLE


def _readiness(ready: bool) -> str:
    return "ready" if ready else "not ready"


def _error(message: str) -> None:
    # Server messages can span lines; keep the report to one.
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:  # client-side checks of the arguments
        _error(str(exc))
        return EXIT_USAGE
    except ServerUnavailableError as exc:
        _error(str(exc))
        return EXIT_UNAVAILABLE
    except MusicServiceError as exc:
        _error(str(exc))
        return EXIT_SERVER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
