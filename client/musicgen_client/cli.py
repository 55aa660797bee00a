"""The `musicgen` command: generate music on the Triton server and save it as WAV, FLAC or Ogg Vorbis.

    musicgen text "a calm piano melody" --out calm.wav --seed 42
    musicgen text "a calm piano melody" --out calm.flac --sample-rate 44100 --loudness lufs
    musicgen text "a calm piano melody" --out best.flac --candidates 4     # keeps the best of four, as FLAC
    musicgen text --prompts-file prompts.txt --out batch/song.wav --json    # batch-001.wav ... JSON lines
    musicgen image photo.jpg --out song.wav --llm-url gpu-box:8000
    musicgen caption photo.jpg
    musicgen chat "name three instruments"
    musicgen health --protocol grpc

Exit codes (EXIT_CODES_HELP): 0 ok; 1 the server failed the request; 2 bad input, refused before sending or
by the server (400 / INVALID_ARGUMENT); 3 server unreachable, not ready or busy (503 / UNAVAILABLE: retry
later); 4 the file could not be written; 130 interrupted. Errors are one line on stderr, never a traceback.
The server encodes the file (`--format`, else the one the file name implies); it is written as it comes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

from .api import (
    DEFAULT_PORTS,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    ImageMusicResult,
    MusicClient,
    MusicClientError,
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
from .interface import (
    CANDIDATES_RANGE,
    GUIDANCE_RANGE,
    IMAGE2MUSIC,
    LENGTH_RANGE,
    MAX_IMAGE_BYTES,
    MAX_NEW_TOKENS_RANGE,
    MAX_PROMPT_BYTES,
    SEED_RANGE,
    STEPS_RANGE,
    TEXT2MUSIC,
    ParameterRange,
)
from .progress_bar import StageBars
from .retry import RetryPolicy

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_BAD_INPUT = 2  # also what argparse exits with on a syntax error
EXIT_UNAVAILABLE = 3
EXIT_WRITE_FAILED = 4
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    ok
  {EXIT_SERVER_ERROR}    the server failed the request (a stage failed; 500 / INTERNAL)
  {EXIT_BAD_INPUT}    bad input: refused before sending, or by the server (400 / INVALID_ARGUMENT)
  {EXIT_UNAVAILABLE}    server unreachable, not ready, or busy (503 / UNAVAILABLE): retry later
  {EXIT_WRITE_FAILED}    the audio file could not be written
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
With --prompts-file, the code of the first prompt that failed."""

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


class OutputError(Exception):
    """The result could not be written where asked."""


def _range_help(what: str, limits: ParameterRange, default: Optional[str] = None) -> str:
    if default is None:
        default = "default: the model's own" if limits.default is None else f"server default {limits.default:g}"
    return f"{what}, {_number(limits.minimum)} to {_number(limits.maximum)} ({default})"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)  # an int seed bound stays exact


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """Every command's parser: its help ends with the exit codes, laid out as written."""
    return argparse.ArgumentParser(epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   **kwargs)


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
        "random pauses; 0: never; streamed calls (--progress) are not retried (default %(default)s)",
    )
    server.add_argument("--json", action="store_true",
                        help="print the result as one JSON object on stdout (one per line with --prompts-file)")

    # The AudioLDM options, shared by every command that makes music.
    music_options = argparse.ArgumentParser(add_help=False)
    audio = music_options.add_argument_group("music")
    audio.add_argument(
        "--out", "-o", type=Path, default=Path("musicgen.wav"),
        help=f"audio file to write: {', '.join(sorted(FORMAT_OF_EXTENSION))} (default %(default)s); with "
        "--prompts-file, numbered: NAME-001.wav, ...",
    )
    audio.add_argument("--negative", metavar="TEXT",
                       help=f"what the music should not sound like, at most {MAX_PROMPT_BYTES} UTF-8 bytes (default: "
                       "none; used only with guidance)")
    audio.add_argument("--steps", type=int, metavar="N", help=_range_help("denoising steps", STEPS_RANGE))
    audio.add_argument("--length", type=float, metavar="S",
                       help=_range_help("clip length in seconds, above the model's minimum (one latent row)",
                                        LENGTH_RANGE))
    audio.add_argument("--guidance", type=float, metavar="G",
                       help=_range_help("classifier-free guidance scale, 1 or less turns it off", GUIDANCE_RANGE))
    audio.add_argument("--seed", type=int,
                       help=_range_help("random seed: the same seed gives the same clip", SEED_RANGE,
                                        "default: a random one, drawn here so that a retry is the same request; "
                                        "printed back either way"))
    audio.add_argument("--candidates", type=int, metavar="N", help=_range_help(
        "waveforms to make in one request, ranked by CLAP; the best is written to --out", CANDIDATES_RANGE))
    audio.add_argument("--all-candidates", action="store_true",
                       help="also write the others, as OUT.2.wav, OUT.3.wav ... in rank order")
    audio.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr, streamed over gRPC (needs --protocol grpc); "
        "default: shown when using grpc from a terminal (never with --prompts-file, which has its own bar)",
    )
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

    # The option of the LLM stages (caption, chat).
    llm_options = argparse.ArgumentParser(add_help=False)
    llm_options.add_argument(
        "--max-new-tokens", type=int, metavar="N", help=_range_help("longest answer in tokens", MAX_NEW_TOKENS_RANGE)
    )
    image_help = f"PNG or JPEG file, at most {MAX_IMAGE_BYTES / 2**20:g} MiB"

    parser = _parser(prog=PROG, description="Generate music with the Triton text-to-music and image-to-music server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_parser)

    text = commands.add_parser("text", parents=[connection, music_options], help="generate music from a text prompt")
    text.add_argument("prompt", nargs="?",
                      help=f"what the music should sound like, at most {MAX_PROMPT_BYTES} UTF-8 bytes")
    text.add_argument("--prompts-file", metavar="FILE",
                      help="generate one clip per line of FILE (- for stdin; blank lines and # comments skipped), "
                      "with a progress bar, instead of PROMPT")
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


def _write_audio(args: argparse.Namespace, result: MusicResult, out: Path) -> Dict[str, Any]:
    """Write the clip (the best candidate; every one with --all-candidates); what was written, as the --json
    record has it."""
    count = len(result.candidates) if args.all_candidates else 1
    files = []
    for rank, path in enumerate(candidate_paths(out, count)):
        try:
            files.append(str(save_audio(path, result.candidate(rank), args.format)))
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc}") from exc
    # The server's file is written as it came; raw samples are encoded here, as --format or the name says.
    written_format = result.audio_format if result.audio_file is not None else args.format or format_of_path(out)
    record = {"file": files[0], "format": written_format, "seed": result.seed,
              "duration_s": round(result.duration_s, 6), "sampling_rate": result.sampling_rate}
    if len(result.candidates) > 1:
        record.update(candidate_files=files, ranking=result.ranking,
                      scores=None if result.scores is None else [round(float(s), 6) for s in result.scores])
    return record


def _ranking_line(record: Dict[str, Any]) -> List[str]:
    """One line about the candidates' order: their scores, or why the server did not rank them."""
    if "candidate_files" not in record:
        return []
    if record["scores"] is not None:
        return ["CLAP scores, best first: " + ", ".join(f"{score:.4f}" for score in record["scores"])]
    return [f"not ranked ({record['ranking'] or 'the server sent no ranking'}): candidates in drawn order"]


def _report(args: argparse.Namespace, record: Dict[str, Any], lines: Sequence[str]) -> None:
    """The result on stdout: the JSON record with --json, the human lines otherwise."""
    for line in [json.dumps(record, ensure_ascii=False)] if args.json else lines:
        print(line, flush=True)


def _wrote(record: Dict[str, Any]) -> List[str]:
    files = record.get("candidate_files", [record["file"]])
    return _ranking_line(record) + [
        f"wrote {file}: {record['duration_s']:.2f} s at {record['sampling_rate']} Hz, {record['format']}, "
        f"seed {record['seed']}" for file in files]


def _progress_bar(args: argparse.Namespace) -> ContextManager[Optional[StageBars]]:
    """The progress callback --progress asks for (by default: on gRPC, when stdout and stderr are terminals)."""
    wanted = args.progress
    if wanted is None:
        wanted = args.protocol == "grpc" and sys.stdout.isatty() and sys.stderr.isatty()
    return StageBars() if wanted else contextlib.nullcontext()


def _run_text(args: argparse.Namespace) -> int:
    options = _music_options(args)
    if args.prompt is not None:
        with _client(args) as client, _progress_bar(args) as progress:
            result = client.text_to_music(args.prompt, **options, progress=progress)
        record = {"prompt": args.prompt, **_write_audio(args, result, args.out)}
        _report(args, record, _wrote(record))
        return EXIT_OK
    prompts = read_prompts(args.prompts_file)
    with _client(args) as client:
        return _run_batch(args, client, prompts, options)


def read_prompts(source: str) -> List[Tuple[int, str]]:
    """(line number, prompt) of every line that is neither blank nor a # comment; `-` reads stdin."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--prompts-file: cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from exc
    prompts = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
               if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"--prompts-file: {source} holds no prompt")
    return prompts


def numbered_outputs(out: Path, count: int) -> Iterator[Path]:
    """NAME-1.wav ... for `out` NAME.wav, zero-padded to the count's width, in order."""
    width = len(str(count))
    for index in range(1, count + 1):
        yield out.with_name(f"{out.stem}-{index:0{width}d}{out.suffix or '.wav'}")


def _run_batch(args: argparse.Namespace, client: MusicClient, prompts: List[Tuple[int, str]],
               options: Dict[str, Any]) -> int:
    """One clip per prompt, with a progress bar on stderr. A prompt the server refuses or fails is reported and
    the batch goes on; an unavailable server ends it (the rest would wait for it too)."""
    from tqdm import tqdm  # only batches need it: the client's import stays light

    first_failure = EXIT_OK
    bar = tqdm(total=len(prompts), unit="clip", desc=PROG, file=sys.stderr, disable=None)
    with bar:
        for (line, prompt), out in zip(prompts, numbered_outputs(args.out, len(prompts))):
            try:
                record = {"line": line, "prompt": prompt,
                          **_write_audio(args, client.text_to_music(prompt, **options), out)}
            except (ValueError, MusicClientError, OutputError) as exc:
                code = exit_code_of(exc)
                first_failure = first_failure or code
                bar.write(f"{PROG}: error: line {line}: {' '.join(str(exc).split())}", file=sys.stderr)
                if args.json:
                    _report(args, {"line": line, "prompt": prompt, "error": str(exc), "exit_code": code}, [])
                if code == EXIT_UNAVAILABLE:
                    return code
            else:
                bar.clear()  # the bar redraws below the line just printed
                _report(args, record, _wrote(record))
            bar.update()
    return first_failure


def _run_image(args: argparse.Namespace) -> int:
    options = _music_options(args)
    # A stage address of its own means that stage lives elsewhere: run the stages from here, one by one.
    with _progress_bar(args) as progress:
        if args.caption_url or args.llm_url:
            with _client(args, args.caption_url) as captioner, _client(args, args.llm_url) as llm:
                with _client(args) as audio:
                    result: ImageMusicResult = image_to_music_by_stages(
                        args.image, caption_client=captioner, llm_client=llm, audio_client=audio,
                        progress=progress, **options
                    )
        else:
            with _client(args) as client:
                result = client.image_to_music(args.image, **options, progress=progress)
    record = {"image": args.image, "caption": result.caption, "music_prompt": result.music_prompt,
              **_write_audio(args, result, args.out)}
    _report(args, record, [f"caption: {result.caption}", f"music prompt: {result.music_prompt}"] + _wrote(record))
    return EXIT_OK


def _run_caption(args: argparse.Namespace) -> int:
    with _client(args) as client:
        caption = client.caption(args.image, max_new_tokens=args.max_new_tokens)
    _report(args, {"image": args.image, "caption": caption}, [caption])
    return EXIT_OK


def _run_chat(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text = client.chat(args.prompt, max_new_tokens=args.max_new_tokens)
    _report(args, {"prompt": args.prompt, "text": text}, [text])
    return EXIT_OK


def _run_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.health(tuple(args.models or (TEXT2MUSIC, IMAGE2MUSIC)))
        record = {"url": client.url, "protocol": client.protocol, "server_ready": report.server_ready,
                  "models": report.models, "ready": report.ready}
    lines = [f"server {record['url']} ({record['protocol']}): {_readiness(report.server_ready)}"]
    lines += [f"model {model}: {_readiness(ready)}" for model, ready in report.models.items()]
    _report(args, record, lines)
    return EXIT_OK if report.ready else EXIT_UNAVAILABLE


def _readiness(ready: bool) -> str:
    return "ready" if ready else "not ready"


def _error(message: str) -> None:
    # Server messages can span lines; keep the report to one.
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)


def exit_code_of(exc: BaseException) -> int:
    """The one map from an error to the exit code (EXIT_CODES_HELP)."""
    if isinstance(exc, ValueError):  # client-side checks of the arguments and files
        return EXIT_BAD_INPUT
    if isinstance(exc, ServerUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(exc, MusicServiceError):
        return EXIT_BAD_INPUT if exc.bad_request else EXIT_SERVER_ERROR
    if isinstance(exc, OutputError):
        return EXIT_WRITE_FAILED
    raise TypeError(f"no exit code for {type(exc).__name__}") from exc


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code (EXIT_CODES_HELP)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "text" and (args.prompt is None) == (args.prompts_file is None):
        parser.error("text: give a PROMPT or --prompts-file, not both or neither")
    try:
        return args.run(args)
    except (ValueError, MusicClientError, OutputError) as exc:
        code = exit_code_of(exc)
        _error(str(exc))
        if args.json:
            print(json.dumps({"error": str(exc), "exit_code": code}, ensure_ascii=False))
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
