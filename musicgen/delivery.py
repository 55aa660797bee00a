"""Finished waveforms turned into the response outputs their request asked for (musicgen_client.audio_encoding).

`audio` is one waveform [samples] or a request's candidates [k, samples], each delivered on its own.
`raw` (the default): FP32 samples in `audio`, resampled or normalised when asked. A file format: one whole file
per waveform in `audio_file` (BYTES [1], or [k] best first) and no `audio`. `sampling_rate` is always the
delivered rate; the other outputs (`seed`, `scores`, `ranking`) pass through. No Triton import: the model.py
adapters call these.
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
    waveforms = np.asarray(outputs[api.AUDIO])
    rate = int(outputs[api.SAMPLING_RATE].reshape(-1)[0])
    delivered = [deliver(w, rate, encoding) for w in (waveforms[None] if waveforms.ndim == 1 else waveforms)]
    rest[api.SAMPLING_RATE] = np.array([delivered[0].sampling_rate], dtype=np.int32)
    if delivered[0].file is None:
        samples = np.stack([d.samples for d in delivered])
        rest[api.AUDIO] = samples[0] if waveforms.ndim == 1 else samples
    else:
        rest[api.AUDIO_FILE] = np.array([d.file for d in delivered], dtype=object)
    return rest


Respond = Callable[[Optional[Outputs], Optional[BaseException]], None]
Finish = Callable[[Optional[Outputs], Optional[BaseException]], None]


class Delivery:
    """Delivers on worker threads, so the thread that finished the waveform (the batching engine's, which every
    request in flight waits on) never encodes: a minute of Ogg Vorbis at 48 kHz takes seconds on one core.
    Default requests, which need no work, are answered at once."""

    def __init__(self, workers: int = 2):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="audio-delivery")

    def finisher(self, outputs: Outputs, encoding: AudioEncoding, respond: Respond) -> Finish:
        """A `finish(produced, error)` for one request: an error answered at once; the outputs the model
        produced (`audio` and what goes with it) joined with `outputs`, delivered as `encoding` asks, answered."""
        def deliver_and_respond(produced: Outputs) -> None:
            try:
                delivered = delivered_outputs({**produced, **outputs}, encoding)
            except Exception as exc:  # noqa: BLE001 - becomes this request's error response
                respond(None, exc)
            else:
                respond(delivered, None)

        def finish(produced: Optional[Outputs], error: Optional[BaseException]) -> None:
            if error is not None:
                respond(None, error)
            elif encoding == AudioEncoding():
                respond({**produced, **outputs}, None)
            else:
                self._pool.submit(deliver_and_respond, produced)

        return finish

    def close(self) -> None:
        self._pool.shutdown(wait=True)
