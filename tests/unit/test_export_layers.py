"""`python -m export ... --layers N`: presets of the LLM families only, a positive count; the weights folder of a
depth is its own, so exports of several depths do not overwrite each other's weights."""
import pytest

from export.__main__ import main as export_main
from export.chatglm.presets import PRESETS as CHATGLM_PRESETS
from export.core import preset_folder
from export.minigpt4.presets import PRESETS as MINIGPT4_PRESETS


@pytest.mark.parametrize("argv", [
    ["audioldm", "--preset", "tiny", "--layers", "2"],  # AudioLDM has no LLM layers
    ["chatglm", "--from", "somewhere", "--layers", "2"],  # real weights keep their depth
    ["chatglm", "--preset", "chatglm-6b-width", "--layers", "0"],
])
def test_layers_is_refused_where_it_means_nothing(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        export_main(argv + ["--out", str(tmp_path / "repo"), "--weights-dir", str(tmp_path / "weights")])
    assert exited.value.code == 2 and "--layers" in capsys.readouterr().err
    assert not (tmp_path / "weights").exists()


def test_real_width_presets_keep_the_real_shapes():
    chatglm = CHATGLM_PRESETS["chatglm-6b-width"]
    assert chatglm["vocab_size"] == 130528 and chatglm["model"]["hidden_size"] == 4096
    assert (chatglm["model"]["num_attention_heads"], chatglm["model"]["inner_hidden_size"]) == (32, 16384)
    minigpt4 = MINIGPT4_PRESETS["minigpt4-7b-width"]
    assert minigpt4["vocab_size"] == 32000 and minigpt4["vision_config"] == minigpt4["qformer_config"] == {}
    text = minigpt4["text_config"]
    assert (text["hidden_size"], text["num_attention_heads"], text["intermediate_size"]) == (4096, 32, 11008)


def test_each_depth_has_its_own_weights_folder():
    assert preset_folder("chatglm", "tiny") == "chatglm-tiny"
    assert preset_folder("chatglm", "chatglm-6b-width") == "chatglm-6b-width"
    assert preset_folder("minigpt4", "minigpt4-7b-width", 2) == "minigpt4-7b-width-2-layers"
