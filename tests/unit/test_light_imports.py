"""The framework-free AudioLDM modules, and everything text2music imports to serve, load neither paddle nor
ppdiffusers nor paddlenlp."""
import json
import subprocess
import sys

LIGHT_MODULES = ["musicgen.audioldm.noise", "musicgen.audioldm.schedulers", "musicgen.audioldm.tokenizer",
                 "musicgen.audioldm.engine", "musicgen.audioldm.pipeline", "musicgen.audioldm.ranking",
                 "musicgen.audioldm.clap_features", "musicgen.protocol", "musicgen.params",
                 "musicgen.runtime"]
HEAVY = {"paddle", "ppdiffusers", "paddlenlp"}

PROBE = f"""
import json, sys
for name in {LIGHT_MODULES!r}:
    __import__(name)
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""


def test_light_modules_import_no_framework():
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & HEAVY)
    assert "numpy" in loaded and "regex" in loaded  # the probe did import the modules
