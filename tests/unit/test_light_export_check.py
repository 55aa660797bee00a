"""Export refuses, up front, a weights folder whose scheduler or tokenizer the server has no port of."""
import json

import pytest

from export.audioldm.build import check_weights_folder
from export.audioldm.presets import write_byte_bpe_tokenizer
from musicgen.audioldm.schedulers import SUPPORTED_SCHEDULERS, SchedulerConfigError
from musicgen.audioldm.tokenizer import TokenizerConfigError

NEEDED = ["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
          "vocoder/config.json"]


def weights_folder(tmp_path, scheduler_config):
    for name in NEEDED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    write_byte_bpe_tokenizer(tmp_path / "tokenizer", model_max_length=16)
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config))
    return tmp_path


def test_ported_scheduler_passes(tmp_path):
    check_weights_folder(weights_folder(tmp_path, {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear"}))


def test_scheduler_without_port_is_refused_listing_the_supported(tmp_path):
    folder = weights_folder(tmp_path, {"_class_name": "EulerAncestralDiscreteScheduler"})
    with pytest.raises(SchedulerConfigError) as err:
        check_weights_folder(folder)
    assert "EulerAncestralDiscreteScheduler" in str(err.value)
    assert all(name in str(err.value) for name in SUPPORTED_SCHEDULERS)


def test_unported_option_is_refused(tmp_path):
    with pytest.raises(SchedulerConfigError, match="thresholding=True"):
        check_weights_folder(weights_folder(tmp_path, {"_class_name": "DDIMScheduler", "thresholding": True}))


def test_missing_files_are_still_reported_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="scheduler_config.json"):
        check_weights_folder(tmp_path)


def test_tokenizer_without_port_is_refused(tmp_path):
    folder = weights_folder(tmp_path, {"_class_name": "DDIMScheduler"})
    (folder / "tokenizer" / "added_tokens.json").write_text('{"<new>": 400}')
    with pytest.raises(TokenizerConfigError, match="added tokens"):
        check_weights_folder(folder)
