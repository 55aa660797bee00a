"""The musicgen client without a server: argument parsing, client-side checks, unreachable servers, and the
CLI's output, batches and exit codes against a stand-in client."""
import argparse
import io
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from musicgen_client import MusicClient, MusicServiceError, ServerUnavailableError, image_to_music_by_stages
from musicgen_client import cli
from musicgen_client.api import PROTOCOLS, HealthReport, MusicResult
from musicgen_client.cli import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_SERVER_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_WRITE_FAILED,
    build_parser,
    main,
)
from musicgen_client.interface import (
    GUIDANCE_RANGE,
    IMAGE,
    LENGTH_RANGE,
    MAX_IMAGE_BYTES,
    MAX_NEW_TOKENS_RANGE,
    MAX_PROMPT_BYTES,
    NEGATIVE_PROMPT,
    PROMPT,
    SEED_RANGE,
    STEPS_RANGE,
)


@pytest.fixture
def closed_url():
    """host:port where nothing listens: bound to get a free port, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture
def not_http_url():
    """host:port of a listener that answers every connection with bytes that are not HTTP (say, a gRPC port)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # the listener was shut down: the test is over
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00 not HTTP")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
    listener.close()
    thread.join()


@pytest.fixture
def photo(tmp_path):
    """An image file; its content is the server's to judge, so any bytes do."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff not a real JPEG")
    return path


# ---- parsing ---------------------------------------------------------------------------------

def test_text_parses_every_option():
    args = build_parser().parse_args(
        ["text", "a calm piano melody", "--out", "calm.wav", "--seed", "42", "--steps", "20", "--length", "5",
         "--guidance", "2.5", "--negative", "drums", "--url", "example:9", "--protocol", "grpc", "--timeout", "7"]
    )
    assert (args.command, args.prompt, str(args.out)) == ("text", "a calm piano melody", "calm.wav")
    assert (args.seed, args.steps, args.length, args.guidance) == (42, 20, 5.0, 2.5)
    assert (args.negative, args.url, args.protocol, args.timeout) == ("drums", "example:9", "grpc", 7.0)


def test_text_leaves_unset_options_to_the_server():
    args = build_parser().parse_args(["text", "rain"])
    assert (args.seed, args.steps, args.length, args.guidance, args.negative) == (None,) * 5
    assert (args.url, args.protocol) == (None, "http")


def test_image_parses_every_option():
    args = build_parser().parse_args(
        ["image", "photo.jpg", "--out", "song.wav", "--seed", "42", "--steps", "20", "--length", "5",
         "--guidance", "2.5", "--negative", "drums", "--url", "example:9", "--protocol", "grpc", "--timeout", "7",
         "--caption-url", "captions:1", "--llm-url", "llms:2"]
    )
    assert (args.command, args.image, str(args.out)) == ("image", "photo.jpg", "song.wav")
    assert (args.seed, args.steps, args.length, args.guidance, args.negative) == (42, 20, 5.0, 2.5, "drums")
    assert (args.url, args.protocol, args.timeout) == ("example:9", "grpc", 7.0)
    assert (args.caption_url, args.llm_url) == ("captions:1", "llms:2")


def test_image_defaults_to_one_server_and_its_defaults():
    args = build_parser().parse_args(["image", "photo.jpg"])
    assert (args.caption_url, args.llm_url, args.url) == (None, None, None)
    assert (args.seed, args.steps, args.length, args.guidance, args.negative) == (None,) * 5


@pytest.mark.parametrize("command, field", [("caption", "image"), ("chat", "prompt")])
def test_llm_commands_parse_max_new_tokens(command, field):
    args = build_parser().parse_args([command, "what", "--max-new-tokens", "64", "--url", "example:9"])
    assert (args.command, getattr(args, field), args.max_new_tokens, args.url) == (command, "what", 64, "example:9")
    assert build_parser().parse_args([command, "what"]).max_new_tokens is None


def test_health_takes_the_connection_options():
    args = build_parser().parse_args(["health", "--protocol", "grpc", "--url", "example:9"])
    assert (args.command, args.protocol, args.url) == ("health", "grpc", "example:9")


@pytest.mark.parametrize(
    "argv",
    [
        ["text", "rain", "--steps", "many"],
        ["text", "rain", "--seed", "1.5"],
        ["text", "rain", "--protocol", "ftp"],
        ["text", "rain", "--timeout", "0"],
        ["text"],
        ["image"],
        ["image", "photo.jpg", "--llm-url"],
        ["caption"],
        ["caption", "photo.jpg", "--max-new-tokens", "many"],
        ["chat"],
        ["chat", "hi", "--seed", "1"],
        [],
    ],
)
def test_malformed_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "error:" in capsys.readouterr().err


# ---- client-side validation ------------------------------------------------------------------

@pytest.mark.parametrize(
    "flag, value, limits",
    [
        ("--steps", "0", STEPS_RANGE),
        ("--steps", "501", STEPS_RANGE),
        ("--length", "61", LENGTH_RANGE),
        ("--length", "nan", LENGTH_RANGE),
        ("--guidance", "-1", GUIDANCE_RANGE),
        ("--seed", "-1", SEED_RANGE),
        ("--seed", "9" * 400, SEED_RANGE),  # beyond float range: must still be a clean range error
    ],
)
def test_out_of_range_options_exit_2_before_any_network(flag, value, limits, closed_url, capsys, tmp_path):
    out = tmp_path / "never.wav"
    # Nothing listens on closed_url: reaching for the network would exit 3, not 2.
    code = main(["text", "rain", flag, value, "--url", closed_url, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"musicgen: error: {limits.name}: ")
    assert f"allowed {limits.minimum} to {limits.maximum}" in err
    assert not out.exists()


def test_range_errors_use_the_interface_wording(closed_url):
    with pytest.raises(ValueError) as served:
        STEPS_RANGE.check(0)
    with MusicClient(closed_url) as client, pytest.raises(ValueError) as ours:
        client.text_to_music("rain", num_inference_steps=0)
    assert str(ours.value) == str(served.value)


def test_out_naming_a_directory_exits_2(closed_url, capsys, tmp_path):
    assert main(["text", "rain", "--url", closed_url, "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize(
    "prompt, options, field, wording",
    [
        ("rain", {"num_inference_steps": 0}, STEPS_RANGE.name, f"allowed {STEPS_RANGE.minimum} to {STEPS_RANGE.maximum}"),
        ("rain", {"num_inference_steps": 2.5}, STEPS_RANGE.name, "not an integer"),
        ("rain", {"num_inference_steps": True}, STEPS_RANGE.name, "not an integer"),
        ("rain", {"audio_length_in_s": float("inf")}, LENGTH_RANGE.name, f"allowed {LENGTH_RANGE.minimum} to"),
        ("rain", {"guidance_scale": "2.5"}, GUIDANCE_RANGE.name, "not a number"),
        ("rain", {"seed": 2**63}, SEED_RANGE.name, f"allowed {SEED_RANGE.minimum} to {SEED_RANGE.maximum}"),
        ("rain", {"negative_prompt": "x" * (MAX_PROMPT_BYTES + 1)}, NEGATIVE_PROMPT, f"at most {MAX_PROMPT_BYTES}"),
        # 4 UTF-8 bytes per character: short enough in characters, too long in bytes
        ("\U0001f3b5" * (MAX_PROMPT_BYTES // 4 + 1), {}, PROMPT, f"at most {MAX_PROMPT_BYTES}"),
        ("   ", {}, PROMPT, "must not be empty"),
        (None, {}, PROMPT, "is required"),
        ("a\x00b", {}, PROMPT, "NUL"),
    ],
)
def test_api_rejects_bad_arguments_naming_field_and_limit(prompt, options, field, wording, closed_url):
    with MusicClient(closed_url) as client, pytest.raises(ValueError) as error:
        client.text_to_music(prompt, **options)
    assert str(error.value).startswith(f"{field}: ") and wording in str(error.value)


@pytest.mark.parametrize("value, wording", [
    (0, f"allowed {MAX_NEW_TOKENS_RANGE.minimum} to {MAX_NEW_TOKENS_RANGE.maximum}"),
    (MAX_NEW_TOKENS_RANGE.maximum + 1, f"allowed {MAX_NEW_TOKENS_RANGE.minimum} to {MAX_NEW_TOKENS_RANGE.maximum}"),
    (2.5, "not an integer"),
    (True, "not an integer"),
])
def test_max_new_tokens_is_checked_before_any_network(value, wording, closed_url, photo):
    with MusicClient(closed_url) as client:
        for stage, request in ((client.caption, photo), (client.chat, "hi")):
            with pytest.raises(ValueError) as error:
                stage(request, max_new_tokens=value)
            assert str(error.value).startswith(f"{MAX_NEW_TOKENS_RANGE.name}: ") and wording in str(error.value)


def test_max_new_tokens_errors_use_the_interface_wording(closed_url):
    with pytest.raises(ValueError) as served:
        MAX_NEW_TOKENS_RANGE.check(0)
    with MusicClient(closed_url) as client, pytest.raises(ValueError) as ours:
        client.chat("hi", max_new_tokens=0)
    assert str(ours.value) == str(served.value)


@pytest.mark.parametrize("command", ["caption", "chat"])
def test_out_of_range_max_new_tokens_exits_2(command, closed_url, photo, capsys, tmp_path):
    argv = sending_commands(photo, closed_url, tmp_path / "never.wav")[command]
    assert main(argv + ["--max-new-tokens", "0"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"musicgen: error: {MAX_NEW_TOKENS_RANGE.name}: 0 is out of range: allowed 1 to 4096\n"


def test_stages_check_the_audio_options_before_any_stage_runs(closed_url, photo):
    with MusicClient(closed_url) as client:
        stages = {"caption_client": client, "llm_client": client, "audio_client": client}
        with pytest.raises(ValueError, match=f"^{SEED_RANGE.name}: -1 is out of range"):
            image_to_music_by_stages(photo, seed=-1, **stages)
        with pytest.raises(TypeError, match="tempo"):
            image_to_music_by_stages(photo, tempo=120, **stages)


def sending_commands(image, url, out):
    """argv of every command that sends an image or a prompt to the LLMs, each stage at `url`."""
    return {
        "image": ["image", str(image), "--url", url, "--out", str(out)],
        "image by stages": ["image", str(image), "--url", url, "--llm-url", url, "--out", str(out)],
        "caption": ["caption", str(image), "--url", url],
        "chat": ["chat", "hi", "--url", url],
    }


IMAGE_COMMANDS = ["image", "image by stages", "caption"]


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_a_missing_image_file_exits_2_naming_it(command, closed_url, capsys, tmp_path):
    missing, out = tmp_path / "nope.jpg", tmp_path / "never.wav"
    assert main(sending_commands(missing, closed_url, out)[command]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"musicgen: error: {IMAGE}: cannot read {missing}: No such file or directory\n"
    assert not out.exists()


def test_an_image_file_over_the_limit_exits_2(closed_url, capsys, tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as file:
        file.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk
    assert main(["image", str(big), "--url", closed_url, "--out", str(tmp_path / "never.wav")]) == EXIT_BAD_INPUT
    assert f"allowed at most {MAX_IMAGE_BYTES}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, wording",
    [({"protocol": "ftp"}, "protocol"), ({"url": "http://127.0.0.1:8000"}, "scheme"), ({"timeout_s": 0}, "timeout_s")],
)
def test_client_rejects_bad_construction(kwargs, wording):
    with pytest.raises(ValueError, match=wording):
        MusicClient(**kwargs)


@pytest.mark.parametrize("protocol, port", [("http", 8000), ("grpc", 8001)])
def test_default_url_follows_protocol(protocol, port):
    with MusicClient(protocol=protocol) as client:
        assert client.url == f"127.0.0.1:{port}"


# ---- unreachable server ----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_text_exits_3_naming_url_and_protocol_when_nothing_listens(protocol, closed_url, capsys, tmp_path):
    out = tmp_path / "never.wav"
    code = main(["text", "rain", "--url", closed_url, "--protocol", protocol, "--out", str(out), "--timeout", "5"])
    captured = capsys.readouterr()
    assert code == EXIT_UNAVAILABLE
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert closed_url in captured.err and f"({protocol})" in captured.err and "make serve" in captured.err
    assert not out.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("command", IMAGE_COMMANDS + ["chat"])
def test_image_and_llm_commands_exit_3_when_nothing_listens(command, protocol, closed_url, photo, capsys, tmp_path):
    out = tmp_path / "never.wav"
    argv = sending_commands(photo, closed_url, out)[command] + ["--protocol", protocol, "--timeout", "5"]
    assert main(argv) == EXIT_UNAVAILABLE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and closed_url in captured.err and f"({protocol})" in captured.err
    assert not out.exists()


def test_an_answer_that_is_not_http_exits_3(not_http_url, capsys):
    assert main(["chat", "hi", "--url", not_http_url, "--timeout", "5"]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{not_http_url} (http) is unavailable: the answer is not HTTP" in err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_exits_3_when_nothing_listens(protocol, closed_url, capsys):
    assert main(["health", "--url", closed_url, "--protocol", protocol, "--timeout", "5"]) == EXIT_UNAVAILABLE
    assert closed_url in capsys.readouterr().err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wait_until_ready_gives_up_after_its_timeout(protocol, closed_url):
    start = time.monotonic()
    with MusicClient(closed_url, protocol, timeout_s=5) as client, pytest.raises(ServerUnavailableError) as error:
        client.wait_until_ready(timeout_s=0.6)
    elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < 3
    assert (error.value.url, error.value.protocol) == (closed_url, protocol)
    assert "still not ready after 0.6 s" in str(error.value)


# ---- output, batches and exit codes, against a stand-in client ------------------------------------

class StandIn:
    """Stands in for MusicClient (as the class and as the instance): each prompt answers as scripted, a result
    of `seconds` of silence with seed 7 unless the script gives an exception to raise."""

    url, protocol = "127.0.0.1:8000", "http"

    def __init__(self, answers=None, seconds=0.5):
        self.answers, self.seconds, self.sent = answers or {}, seconds, []

    def __call__(self, url=None, protocol="http", timeout_s=None, retry=None):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def text_to_music(self, prompt, progress=None, **options):
        self.sent.append((prompt, options))
        answer = self.answers.get(prompt)
        if isinstance(answer, BaseException):
            raise answer
        return MusicResult(np.zeros(int(16000 * self.seconds), dtype=np.float32), 16000, options.get("seed") or 7)

    def health(self, models):
        return HealthReport(True, {m: m != "image2music" for m in models})


@pytest.fixture
def stand_in(monkeypatch):
    def install(answers=None):
        client = StandIn(answers)
        monkeypatch.setattr(cli, "MusicClient", client)
        return client
    return install


def test_json_prints_one_record_with_the_seed_and_the_wav(stand_in, capsys, tmp_path):
    stand_in()
    out = tmp_path / "calm.wav"
    assert main(["text", "calm piano", "--out", str(out), "--json"]) == EXIT_OK
    record = json.loads(capsys.readouterr().out)
    assert record == {"prompt": "calm piano", "file": str(out), "format": "wav", "seed": 7, "duration_s": 0.5,
                      "sampling_rate": 16000}
    assert out.exists()


def test_the_seed_is_printed_back(stand_in, capsys, tmp_path):
    stand_in()
    assert main(["text", "rain", "--out", str(tmp_path / "r.wav"), "--seed", "42"]) == EXIT_OK
    assert capsys.readouterr().out.endswith("0.50 s at 16000 Hz, wav, seed 42\n")


def prompts_file(tmp_path, *lines):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_prompts_file_makes_one_numbered_clip_per_prompt(stand_in, capsys, tmp_path):
    client = stand_in()
    path = prompts_file(tmp_path, "# a comment", "rain", "", "  calm piano  ", "drums")
    out = tmp_path / "song.wav"
    assert main(["text", "--prompts-file", str(path), "--out", str(out), "--steps", "3", "--json"]) == EXIT_OK
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["line"], r["prompt"], Path(r["file"]).name) for r in records] == [
        (2, "rain", "song-1.wav"), (4, "calm piano", "song-2.wav"), (5, "drums", "song-3.wav")]
    assert all(Path(r["file"]).exists() for r in records)
    assert [options["num_inference_steps"] for _, options in client.sent] == [3, 3, 3]


def test_numbered_outputs_pad_to_the_count():
    assert [p.name for p in cli.numbered_outputs(Path("a/b.wav"), 10)][::9] == ["b-01.wav", "b-10.wav"]


def test_a_batch_goes_on_past_refused_and_failed_prompts_and_exits_with_the_first_failure(stand_in, capsys, tmp_path):
    client = stand_in({"bad": MusicServiceError("400", "prompt: must not be empty"),
                       "broken": MusicServiceError("StatusCode.INTERNAL", "stage audioldm_unet failed")})
    path = prompts_file(tmp_path, "rain", "bad", "broken", "drums")
    assert main(["text", "--prompts-file", str(path), "--out", str(tmp_path / "s.wav"), "--json"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r.get("exit_code", EXIT_OK) for r in records] == [EXIT_OK, EXIT_BAD_INPUT, EXIT_SERVER_ERROR, EXIT_OK]
    assert [prompt for prompt, _ in client.sent] == ["rain", "bad", "broken", "drums"]
    assert "musicgen: error: line 2: server error (400): prompt: must not be empty" in captured.err


def test_a_batch_stops_when_the_server_is_unavailable(stand_in, capsys, tmp_path):
    client = stand_in({"b": ServerUnavailableError("127.0.0.1:8000", "http", "503 engine queue full")})
    path = prompts_file(tmp_path, "a", "b", "c")
    assert main(["text", "--prompts-file", str(path), "--out", str(tmp_path / "s.wav")]) == EXIT_UNAVAILABLE
    assert [prompt for prompt, _ in client.sent] == ["a", "b"]
    assert capsys.readouterr().out.count("wrote ") == 1


def test_a_batch_shows_a_progress_bar_on_a_terminal(stand_in, monkeypatch, tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stand_in()
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    path = prompts_file(tmp_path, "a", "b", "c")
    assert main(["text", "--prompts-file", str(path), "--out", str(tmp_path / "s.wav")]) == EXIT_OK
    assert "3/3" in terminal.getvalue()


@pytest.mark.parametrize("content, wording", [(None, "cannot read"), ("# only a comment\n\n", "holds no prompt")])
def test_an_unusable_prompts_file_exits_2(content, wording, stand_in, capsys, tmp_path):
    client = stand_in()
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_text(content)
    assert main(["text", "--prompts-file", str(path), "--out", str(tmp_path / "s.wav")]) == EXIT_BAD_INPUT
    assert wording in capsys.readouterr().err and client.sent == []


def test_prompt_and_prompts_file_are_exclusive(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["text", "rain", "--prompts-file", str(prompts_file(tmp_path, "a"))])
    assert exit_info.value.code == EXIT_BAD_INPUT


@pytest.mark.parametrize("error, code", [
    (MusicServiceError("400", "seed: -1 is out of range"), EXIT_BAD_INPUT),
    (MusicServiceError("StatusCode.INVALID_ARGUMENT", "image: not a PNG or JPEG"), EXIT_BAD_INPUT),
    (MusicServiceError("500", "stage audioldm_unet failed"), EXIT_SERVER_ERROR),
    (MusicServiceError(None, "text2music answered with unreadable outputs"), EXIT_SERVER_ERROR),
    (ServerUnavailableError("127.0.0.1:8000", "grpc", "engine queue full"), EXIT_UNAVAILABLE),
])
def test_server_answers_map_to_distinct_exit_codes(error, code, stand_in, capsys, tmp_path):
    stand_in({"rain": error})
    assert main(["text", "rain", "--out", str(tmp_path / "r.wav"), "--json"]) == code
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": str(error), "exit_code": code}
    assert captured.err.count("\n") == 1


def test_a_wav_that_cannot_be_written_exits_4(stand_in, capsys, tmp_path):
    stand_in()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["text", "rain", "--out", str(blocker / "r.wav")]) == EXIT_WRITE_FAILED
    assert "cannot write" in capsys.readouterr().err


def test_health_json(stand_in, capsys):
    stand_in()
    assert main(["health", "--json"]) == EXIT_UNAVAILABLE  # the stand-in's image2music is not ready
    assert json.loads(capsys.readouterr().out) == {
        "url": "127.0.0.1:8000", "protocol": "http", "server_ready": True,
        "models": {"text2music": True, "image2music": False}, "ready": False}


def subcommand_parsers():
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices


@pytest.mark.parametrize("command", ["text", "image", "caption", "chat", "health"])
def test_help_explains_every_option_and_the_exit_codes(command):
    parser = subcommand_parsers()[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "exit codes:" in text and f"{EXIT_UNAVAILABLE}    server unreachable" in text


@pytest.mark.parametrize("command, limits", [
    ("text", STEPS_RANGE), ("text", LENGTH_RANGE), ("text", GUIDANCE_RANGE), ("text", SEED_RANGE),
    ("image", STEPS_RANGE), ("caption", MAX_NEW_TOKENS_RANGE), ("chat", MAX_NEW_TOKENS_RANGE),
])
def test_help_states_ranges_and_defaults_from_the_interface(command, limits):
    text = " ".join(subcommand_parsers()[command].format_help().split())
    assert f"{cli._number(limits.minimum)} to {cli._number(limits.maximum)}" in text
    if limits.default is not None:
        assert f"server default {cli._number(limits.default)}" in text
