"""The framework-free AudioLDM modules, and everything text2music imports to serve, load neither paddle nor
ppdiffusers nor paddlenlp; nor does the parent process of an LLM export (only its per-component jobs trace)."""
import json
import subprocess
import sys

LIGHT_MODULES = ["musicgen.audioldm.noise", "musicgen.audioldm.schedulers", "musicgen.audioldm.tokenizer",
                 "musicgen.audioldm.engine", "musicgen.audioldm.pipeline", "musicgen.audioldm.ranking",
                 "musicgen.audioldm.clap_features", "musicgen.protocol", "musicgen.params",
                 "musicgen.runtime"]
# What `python -m export minigpt4|chatglm --from ...` holds while export.job traces beside it (export.serving).
LLM_EXPORT_PARENT = ["export.__main__", "export.serving", "export.job", "export.minigpt4.build",
                     "export.chatglm.build"]
HEAVY = {"paddle", "ppdiffusers", "paddlenlp"}


def imported_packages(modules) -> set:
    probe = f"""
import json, sys
for name in {list(modules)!r}:
    __import__(name)
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""
    return set(json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                         text=True).stdout))


def test_light_modules_import_no_framework():
    loaded = imported_packages(LIGHT_MODULES)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & HEAVY)
    assert "numpy" in loaded and "regex" in loaded  # the probe did import the modules


def test_an_llm_export_parent_imports_no_framework():
    loaded = imported_packages(LLM_EXPORT_PARENT)
    assert loaded.isdisjoint(HEAVY), sorted(loaded & HEAVY)
    assert "export" in loaded and "musicgen" in loaded
