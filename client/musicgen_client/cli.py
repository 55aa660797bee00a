"""The `musicgen` command: generate music on the Triton server and save it as WAV, FLAC or Ogg Vorbis.

    musicgen text "a calm piano melody" --out calm.wav --seed 42
    musicgen text "a calm piano melody" --out calm.flac --sample-rate 44100 --loudness lufs
    musicgen text "a calm piano melody" --out best.flac --candidates 4     # keeps the best of four, as FLAC
    musicgen image photo.jpg --out song.wav --llm-url gpu-box:8000
    musicgen caption photo.jpg
    musicgen chat "name three instruments"
    musicgen health --protocol grpc

The server encodes the file (`--format`, else the one the file name implies); it is written as it comes.
Exit codes: 0 ok, 1 the file could not be written, 2 bad arguments (an image file that cannot be read
included), 3 server unreachable or not ready, 4 the server returned an error. Errors are one line on
stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, ContextManager, Dict, List, Optional

from .api import (
    DEFAULT_PORTS,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    MusicClient,
    MusicResult,
    MusicServiceError,
    ServerUnavailableError,
    image_to_music_by_stages,
    save_audio,
)
from .audio_encoding import (
    FILE_FORMATS,
    FORMAT_OF_EXTENSION,
    LOUDNESS_MODES,
    LOUDNESS_TARGETS,
    NONE,
    OUTPUT_SAMPLING_RATES,
    AudioEncoding,
    format_of_path,
)
from .retry import RetryPolicy
from .interface import (
    CANDIDATES_RANGE,
    GUIDANCE_RANGE,
    IMAGE2MUSIC,
    LENGTH_RANGE,
    MAX_IMAGE_BYTES,
    MAX_NEW_TOKENS_RANGE,
    STEPS_RANGE,
    TEXT2MUSIC,
    ParameterRange,
)
from .progress_bar import StageBars

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


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _range_help(what: str, limits: ParameterRange) -> str:
    default = "default: the model's own" if limits.default is None else f"server default {limits.default:g}"
    return f"{what}, {limits.minimum:g} to {limits.maximum:g} ({default})"


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand per served model, each taking the connection options."""
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
        help="seconds each request may take: the server stops the work once they have passed (default %(default)g)",
    )
    server.add_argument(
        "--retries",
        type=_count,
        default=RetryPolicy.retries,
        metavar="N",
        help="times to send a request again that the server refused for now (busy, restarting), with growing "
        "random pauses; 0: never (default %(default)s)",
    )

    # The AudioLDM options, shared by every command that makes music.
    music_options = argparse.ArgumentParser(add_help=False)
    audio = music_options.add_argument_group("music")
    audio.add_argument(
        "--out", "-o", type=Path, default=Path("musicgen.wav"),
        help=f"audio file to write: {', '.join(sorted(FORMAT_OF_EXTENSION))} (default %(default)s)",
    )
    audio.add_argument("--negative", metavar="TEXT", help="what the music should not sound like")
    audio.add_argument("--steps", type=int, metavar="N", help=_range_help("denoising steps", STEPS_RANGE))
    audio.add_argument("--length", type=float, metavar="S", help=_range_help("clip length in seconds", LENGTH_RANGE))
    audio.add_argument("--guidance", type=float, metavar="G", help=_range_help("guidance scale", GUIDANCE_RANGE))
    audio.add_argument("--seed", type=int, help="random seed; without one a random one is drawn (so that a retry is "
                       "the same request), printed afterwards")
    audio.add_argument("--candidates", type=int, metavar="N", help=_range_help(
        "waveforms to make in one request, ranked by CLAP; the best is written to --out", CANDIDATES_RANGE))
    audio.add_argument("--all-candidates", action="store_true",
                       help="also write the others, as OUT.2.wav, OUT.3.wav ... in rank order")
    output = music_options.add_argument_group("output file")
    output.add_argument("--format", choices=tuple(FILE_FORMATS),
                        help="wav, flac: 16-bit; wav24, flac24: 24-bit; wavf32: float; ogg: Vorbis, lossy "
                             "(default: from --out's extension, 16-bit for .wav and .flac)")
    output.add_argument("--sample-rate", type=int, choices=OUTPUT_SAMPLING_RATES, metavar="HZ",
                        help=f"resample to {', '.join(map(str, OUTPUT_SAMPLING_RATES))} Hz (default: the model's own)")
    output.add_argument("--loudness", choices=LOUDNESS_MODES, default=NONE,
                        help="normalise the sample peak (dBFS) or the integrated loudness (LUFS, ITU-R BS.1770); "
                             "LUFS never pushes a peak past full scale (default %(default)s)")
    output.add_argument("--loudness-target", type=float, metavar="DB",
                        help="; ".join(f"{mode}: {r.minimum:g} to {r.maximum:g}, default {r.default:g}"
                                       for mode, r in LOUDNESS_TARGETS.items()))
    audio.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr, streamed over gRPC (needs --protocol grpc); "
        "default: shown when using grpc from a terminal",
    )

    # The option of the LLM stages (caption, chat).
    llm_options = argparse.ArgumentParser(add_help=False)
    llm_options.add_argument(
        "--max-new-tokens", type=int, metavar="N", help=_range_help("longest answer in tokens", MAX_NEW_TOKENS_RANGE)
    )
    image_help = f"PNG or JPEG file, at most {MAX_IMAGE_BYTES / 2**20:g} MiB"

    parser = argparse.ArgumentParser(
        prog=PROG, description="Generate music with the Triton text-to-music and image-to-music server."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    text = commands.add_parser("text", parents=[connection, music_options], help="generate music from a text prompt")
    text.add_argument("prompt", help="what the music should sound like")
    text.set_defaults(run=_run_text)

    image = commands.add_parser(
        "image",
        parents=[connection, music_options],
        help="generate music for an image",
        description="Caption the image, have the LLM write a music prompt for the caption, render it. "
        "With neither --caption-url nor --llm-url the server at --url runs all three stages (image2music); "
        "with either, this command runs them one by one, each stage at its own address (--url by default).",
    )
    image.add_argument("image", help=image_help)
    stages = image.add_argument_group("stage by stage")
    stages.add_argument("--caption-url", metavar="HOST:PORT", help="server of the caption model (default --url)")
    stages.add_argument("--llm-url", metavar="HOST:PORT", help="server of the chatglm model (default --url)")
    image.set_defaults(run=_run_image)

    caption = commands.add_parser("caption", parents=[connection, llm_options], help="describe an image")
    caption.add_argument("image", help=image_help)
    caption.set_defaults(run=_run_caption)

    chat = commands.add_parser("chat", parents=[connection, llm_options], help="ask the LLM (chatglm) a question")
    chat.add_argument("prompt", help="what to ask")
    chat.set_defaults(run=_run_chat)

    health = commands.add_parser("health", parents=[connection], help="show whether the server and models are ready")
    health.add_argument("--model", action="append", dest="models", metavar="NAME",
                        help="a model to check (repeatable; default: text2music and image2music)")
    health.set_defaults(run=_run_health)
    return parser


def _client(args: argparse.Namespace, url: Optional[str] = None) -> MusicClient:
    """A client of the server at `url`, --url when None."""
    return MusicClient(url or args.url, args.protocol, args.timeout, RetryPolicy(retries=args.retries))


def _music_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The music options as `text_to_music` and `image_to_music` name them.

    Raises ValueError when --out names a directory: better before spending a generation on it.
    """
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name")
    encoding = AudioEncoding(args.format or format_of_path(args.out), args.sample_rate, args.loudness,
                             args.loudness_target)
    return {
        "negative_prompt": args.negative,
        "num_inference_steps": args.steps,
        "audio_length_in_s": args.length,
        "guidance_scale": args.guidance,
        "seed": args.seed,
        "encoding": encoding,
        "num_waveforms_per_prompt": args.candidates,
    }


def candidate_paths(out: Path, count: int) -> List[Path]:
    """Where the candidates go, best first: OUT itself, then OUT.2.wav, OUT.3.wav ... (the rank before the suffix)."""
    return [out] + [out.with_name(f"{out.stem}.{rank}{out.suffix or '.wav'}") for rank in range(2, count + 1)]


def _describe_ranking(result: MusicResult) -> Optional[str]:
    """One line about the candidates' order: their scores, or why the server did not rank them."""
    if result.scores is not None:
        return "CLAP scores, best first: " + ", ".join(f"{score:.4f}" for score in result.scores)
    if len(result.candidates) > 1:
        return f"not ranked ({result.ranking or 'the server sent no ranking'}): candidates in drawn order"
    return None


def _write_audio(args: argparse.Namespace, result: MusicResult) -> int:
    count = len(result.candidates) if args.all_candidates else 1
    written = []
    for rank, path in enumerate(candidate_paths(args.out, count)):
        try:
            written.append(save_audio(path, result.candidate(rank), args.format))
        except OSError as exc:
            _error(f"cannot write {path}: {exc}")
            return EXIT_WRITE_FAILED
    ranking = _describe_ranking(result)
    if ranking:
        print(ranking)
    for path in written:
        print(f"wrote {path}: {result.duration_s:.2f} s at {result.sampling_rate} Hz, {result.audio_format}, "
              f"seed {result.seed}")
    return EXIT_OK


def _progress_bar(args: argparse.Namespace) -> ContextManager[Optional[StageBars]]:
    """The progress callback --progress asks for (by default: on gRPC, when stdout and stderr are terminals)."""
    wanted = args.progress
    if wanted is None:
        wanted = args.protocol == "grpc" and sys.stdout.isatty() and sys.stderr.isatty()
    return StageBars() if wanted else contextlib.nullcontext()


def _run_text(args: argparse.Namespace) -> int:
    options = _music_options(args)
    with _client(args) as client, _progress_bar(args) as progress:
        result = client.text_to_music(args.prompt, **options, progress=progress)
    return _write_audio(args, result)


def _run_image(args: argparse.Namespace) -> int:
    options = _music_options(args)
    # A stage address of its own means that stage lives elsewhere: run the stages from here, one by one.
    with _progress_bar(args) as progress:
        if args.caption_url or args.llm_url:
            with _client(args, args.caption_url) as captioner, _client(args, args.llm_url) as llm:
                with _client(args) as audio:
                    result = image_to_music_by_stages(
                        args.image, caption_client=captioner, llm_client=llm, audio_client=audio,
                        progress=progress, **options
                    )
        else:
            with _client(args) as client:
                result = client.image_to_music(args.image, **options, progress=progress)
    print(f"caption: {result.caption}")
    print(f"music prompt: {result.music_prompt}")
    return _write_audio(args, result)


def _run_caption(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.caption(args.image, max_new_tokens=args.max_new_tokens))
    return EXIT_OK


def _run_chat(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.chat(args.prompt, max_new_tokens=args.max_new_tokens))
    return EXIT_OK


def _run_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.health(tuple(args.models or (TEXT2MUSIC, IMAGE2MUSIC)))
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
