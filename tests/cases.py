"""Requests shared by the end-to-end batteries and the soak (benchmarks/soak.py): the bad inputs, each with what
its 400 must name, and how interface field values become request tensors.

Importable as `cases` (pytest puts tests/ on sys.path for its rootdir conftest; the soak adds it itself).
"""
from typing import Dict

import numpy as np
from PIL import Image

from images import encode, png_claiming, varied_image  # tests/images.py
from musicgen_client import interface as api

DTYPES = {"BYTES": object, "FP32": np.float32, "INT32": np.int32, "INT64": np.int64}
DATATYPES = {np.dtype(dtype): datatype for datatype, dtype in DTYPES.items()}  # numpy → Triton datatype

PHOTO = varied_image(3, size=(80, 60), fmt="PNG")


def arrays_of(fields: Dict, specs=api.TEXT2MUSIC_INPUTS) -> Dict[str, np.ndarray]:
    """Interface field values (str, bytes, numbers) as one request's [1]-shaped tensors of the served datatypes."""
    datatypes = {spec.name: spec.datatype for spec in specs}
    return {name: np.array([value.encode() if isinstance(value, str) else value], dtype=DTYPES[datatypes[name]])
            for name, value in fields.items()}


def infer_raw(server, protocol: str, model: str, arrays: Dict[str, np.ndarray]):
    """One request of named tensors sent with plain tritonclient, as a client outside this project sends it."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    lib = {"http": httpclient, "grpc": grpcclient}[protocol]
    inputs = []
    for name, array in arrays.items():
        tensor = lib.InferInput(name, list(array.shape), DATATYPES[array.dtype])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    client = lib.InferenceServerClient(server.http_url if protocol == "http" else server.grpc_url)
    try:
        return client.infer(model, inputs)
    finally:
        client.close()


# text2music options out of range (sent with a valid prompt) → the message of their 400.
TEXT2MUSIC_BAD_FIELDS = [
    (dict(num_inference_steps=0), "num_inference_steps: 0 is out of range: allowed 1 to 500"),
    (dict(num_inference_steps=10_000), "num_inference_steps: 10000 is out of range"),
    (dict(audio_length_in_s=float("nan")), "audio_length_in_s: nan is out of range"),
    (dict(audio_length_in_s=120.0), "audio_length_in_s: 120.0 is out of range: allowed 0.0 to 30.0"),
    (dict(audio_length_in_s=0.01), "audio_length_in_s: 0.01"),  # below one latent row of this model
    (dict(guidance_scale=-2.0), "guidance_scale: -2.0 is out of range"),
    (dict(guidance_scale=float("inf")), "guidance_scale: inf is out of range"),
    (dict(seed=-1), "seed: -1 is out of range"),
    (dict(audio_format="mp3"), "audio_format: 'mp3' is not offered: choose one of raw, wav"),
    (dict(output_sampling_rate=8000), "output_sampling_rate: 8000 Hz is not offered"),
    (dict(loudness="lufs", loudness_target=float("nan")), "loudness_target: nan is out of range"),
    (dict(loudness_target=-14.0), "loudness_target: -14.0 given without a loudness mode"),
    (dict(num_waveforms_per_prompt=0), "num_waveforms_per_prompt: 0 is out of range: allowed 1 to 8"),
    (dict(num_waveforms_per_prompt=9), "num_waveforms_per_prompt: 9 is out of range: allowed 1 to 8"),
]

# text2music requests malformed as tensors (sent as they are) → the message of their 400.
TEXT2MUSIC_MALFORMED = [
    ({api.PROMPT: np.array([b""], dtype=object)}, "prompt: must not be empty"),
    ({api.PROMPT: np.array([b"\xff\xfe\xfd"], dtype=object)}, "prompt: is not valid UTF-8"),
    ({api.PROMPT: np.array([b"a" * 100_000], dtype=object)}, "prompt: is 100000 bytes long: allowed at most 4096"),
    ({api.NEGATIVE_PROMPT: np.array([b"ok"], dtype=object)}, "prompt"),  # prompt missing
    ({api.PROMPT: np.array([b"x"], dtype=object), api.SEED: np.array([1.5], dtype=np.float32)}, "seed"),  # dtype
    ({api.PROMPT: np.array([b"a", b"b"], dtype=object)}, "prompt"),  # shape
    ({api.PROMPT: np.array([b"x"], dtype=object),  # dtype: Triton's own 400 names the input
      api.NUM_WAVEFORMS_PER_PROMPT: np.array([2.0], dtype=np.float32)}, "num_waveforms_per_prompt"),
    ({api.PROMPT: np.array([b"x"], dtype=object),
      api.NUM_WAVEFORMS_PER_PROMPT: np.array([2, 3], dtype=np.int32)}, "num_waveforms_per_prompt"),  # shape
]

# Image bytes the image models refuse → the message of their 400.
BAD_IMAGES = [
    (b"", "image: is empty"),
    (b"definitely not a picture", "image: is not a recognised image"),
    (PHOTO[: len(PHOTO) // 3], "image: is corrupt or truncated"),
    (encode(Image.new("RGB", (8, 8)), "GIF"), "image: is GIF: allowed PNG, JPEG"),
    (png_claiming(100_000, 100_000), "image: is too large to decode"),
    (png_claiming(8_000, 8_000), "pixels: allowed at most"),
    (png_claiming(0, 12), "image: "),
]
