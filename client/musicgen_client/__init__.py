"""Client of the text-to-music and image-to-music Triton deployment.

    from musicgen_client import AudioEncoding, MusicClient, save_audio

The API names load lazily so that `musicgen_client.interface`, which server-side code imports too,
stays free of numpy, soundfile and tritonclient.
"""
from typing import Any

__all__ = [
    "AudioEncoding",
    "HealthReport",
    "ImageMusicResult",
    "MusicClient",
    "MusicClientError",
    "MusicResult",
    "MusicServiceError",
    "ServerUnavailableError",
    "generate",
    "image_bytes",
    "image_to_music_by_stages",
    "save_audio",
    "save_wav",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
