"""What ranking candidates costs at real size: the CLAP audio side of laion/clap-htsat-unfused's shape.

Builds paddlenlp's ClapModel with the default (real) HTSAT config and random weights, exports its audio side with
the project's own export path (export/audioldm/clap.py's layer, export.core's tracing and conversion), then times,
for k candidates of `--seconds` at 16 kHz, the numpy features (resampling to 48 kHz + log-mel,
musicgen/audioldm/clap_features.py) and one onnxruntime call of the audio encoder; minimum of `--repeat` runs.

    .venv/bin/python benchmarks/clap_ranking.py --out build/clap_real --k 1 4
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "client")]  # runs from a plain checkout: export/ is not installed

# laion/clap-htsat-unfused's extractor settings.
REAL_FEATURES = dict(feature_size=64, sampling_rate=48000, hop_length=480, fft_window_size=1024, max_length_s=10,
                     frequency_min=50, frequency_max=14000)


def export_real_size(out: Path):
    import paddle
    from paddlenlp.transformers import ClapConfig, ClapModel

    from export.audioldm.clap import AudioEncoder
    from export.core import convert_to_onnx, save_paddle_inference

    paddle.seed(0)
    clap = ClapModel(ClapConfig(text_config=dict(num_hidden_layers=1), audio_config={}, projection_dim=512))
    clap.eval()
    frames = REAL_FEATURES["max_length_s"] * REAL_FEATURES["sampling_rate"] // REAL_FEATURES["hop_length"] + 1
    spec = [paddle.static.InputSpec([-1, 1, frames, REAL_FEATURES["feature_size"]], "float32", "input_features")]
    save_paddle_inference(AudioEncoder(clap), spec, out)
    convert_to_onnx(out)
    params = sum(p.size for p in clap.audio_model.parameters()) + sum(p.size for p in clap.audio_projection.parameters())
    return clap, int(params)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/clap_real"))
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    import paddle

    from musicgen.audioldm.clap_features import ClapFeatureConfig, ClapFeatures
    from musicgen.runtime import RuntimeOptions, open_graph

    clap, params = export_real_size(args.out)
    features = ClapFeatures(ClapFeatureConfig(**REAL_FEATURES), 16000)
    encoder = open_graph(args.out, RuntimeOptions())
    rng = np.random.default_rng(0)
    for k in args.k:
        clips = (0.1 * rng.standard_normal((k, int(args.seconds * 16000)))).astype(np.float32)
        feature_s, encoder_s = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            x = features(list(clips))
            feature_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            (embeds,) = encoder.run({"input_features": x})
            encoder_s.append(time.perf_counter() - start)
        with paddle.no_grad():
            eager = clap.get_audio_features(input_features=paddle.to_tensor(x)).numpy()
        print(json.dumps({"k": k, "seconds": args.seconds, "audio_encoder_parameters": params,
                          "features_s": round(min(feature_s), 3), "encoder_onnxruntime_s": round(min(encoder_s), 3),
                          "max_abs_vs_eager": float(np.abs(eager - embeds).max())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
