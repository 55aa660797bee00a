"""A finished waveform turned into the response outputs its request asked for (musicgen_client.audio_encoding).

`raw` (the default): FP32 samples in `audio`, resampled or normalised when asked. A file format: the whole file in
`audio_file` (BYTES [1]) and no `audio`. `sampling_rate` is always the delivered rate, `seed` passes through.
No Triton import: the model.py adapters call these.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional

import numpy as np

from musicgen_client import interface as api
from musicgen_client.audio_encoding import AudioEncoding, deliver

Outputs = Dict[str, np.ndarray]


def delivered_outputs(outputs: Outputs, encoding: AudioEncoding) -> Outputs:
    """`outputs` as a model produced them (`audio` at `sampling_rate`, and others such as `seed`), delivered."""
    rest = {name: value for name, value in outputs.items() if name != api.AUDIO}
    delivered = deliver(outputs[api.AUDIO], int(outputs[api.SAMPLING_RATE].reshape(-1)[0]), encoding)
    rest[api.SAMPLING_RATE] = np.array([delivered.sampling_rate], dtype=np.int32)
    if delivered.file is None:
        rest[api.AUDIO] = delivered.samples
    else:
        rest[api.AUDIO_FILE] = np.array([delivered.file], dtype=object)
    return rest


Respond = Callable[[Optional[Outputs], Optional[BaseException]], None]
Finish = Callable[[Optional[np.ndarray], Optional[BaseException]], None]


class Delivery:
    """Delivers on worker threads, so the thread that finished the waveform (the batching engine's, which every
    request in flight waits on) never encodes: a minute of Ogg Vorbis at 48 kHz takes seconds on one core.
    Default requests, which need no work, are answered at once."""

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="audio-delivery")

    def finisher(self, outputs: Outputs, encoding: AudioEncoding, respond: Respond) -> Finish:
        """A `finish(audio, error)` for one request: an error answered at once, the audio with `outputs`
        delivered as `encoding` asks, then answered."""
        def deliver_and_respond(audio: np.ndarray) -> None:
            try:
                delivered = delivered_outputs({api.AUDIO: audio, **outputs}, encoding)
            except Exception as exc:  # noqa: BLE001 - becomes this request's error response
                respond(None, exc)
            else:
                respond(delivered, None)

        def finish(audio: Optional[np.ndarray], error: Optional[BaseException]) -> None:
            if error is not None:
                respond(None, error)
            elif encoding == AudioEncoding():
                respond({api.AUDIO: audio, **outputs}, None)
            else:
                self._pool.submit(deliver_and_respond, audio)

        return finish

    def close(self) -> None:
        self._pool.shutdown(wait=True)
