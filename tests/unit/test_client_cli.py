"""The musicgen client without a server: argument parsing, client-side checks, unreachable servers."""
import socket
import time

import pytest

from musicgen_client import MusicClient, ServerUnavailableError
from musicgen_client.api import PROTOCOLS
from musicgen_client.cli import EXIT_UNAVAILABLE, EXIT_USAGE, build_parser, main
from musicgen_client.interface import (
    GUIDANCE_RANGE,
    LENGTH_RANGE,
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
        [],
    ],
)
def test_malformed_command_lines_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USAGE
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
    assert code == EXIT_USAGE
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
    assert main(["text", "rain", "--url", closed_url, "--out", str(tmp_path)]) == EXIT_USAGE
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
