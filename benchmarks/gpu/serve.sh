#!/usr/bin/env bash
# text2music served from a GPU: real-size AudioLDM-s graphs on onnxruntime-gpu's CUDA provider inside the
# text2music model (IO binding + one CUDA graph per padded batch size, in-flight batching), through tritonserver
# (the nvidia-pytriton wheel's binary), side by side with the same engine in process, in one run.
#
# Run by the device tool from the repository root of a lent GPU machine (nothing can be installed there from a
# registry, so everything travels). Here, first:
#   bash ../shared/tools/gpu-wheels                                   # onnxruntime-gpu in .gpu/1..5
#   python benchmarks/weightless.py strip build/repo_audioldm_s .gpu/7/graphs   # graphs without their weights
#   + the serving wheels for cp312 (`pip download --no-deps --only-binary=:all: --python-version 3.12 ...`, see
#     ../.library/device/README.md): numpy==1.26.4 into .gpu/5 (beside the last onnxruntime part),
#     nvidia-pytriton==0.7.0 into .gpu/6, and into .gpu/7 tritonclient==2.73.0 geventhttpclient gevent greenlet
#     zope.event zope.interface python-rapidjson brotli ml-dtypes==0.5.4 soundfile cffi pycparser
# then calls made back to back (the machine stays warm ≈30 s), each carrying one folder .gpu/N with
#   mkdir -p /tmp/gw && cp -r .gpu/N/* /tmp/gw/
# and the last one carrying .gpu/7 with `... && bash benchmarks/gpu/serve.sh`. Reports and sweep.log land in $OUT.
set -euo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
py=python3
cd "$(dirname "$0")/../.."

if compgen -G "/tmp/gw/part.*" >/dev/null; then
  cat /tmp/gw/part.* > "/tmp/gw/$(cat /tmp/gw/NAME)" && rm /tmp/gw/part.*
fi
# The image's python3 is a venv holding a CPU onnxruntime and numpy 2; the Python backend stub of this pytriton
# needs numpy 1.x, and the stub takes its packages from the first python3 on PATH: install into that venv.
$py -m pip uninstall -y -q onnxruntime >/dev/null 2>&1 || true
$py -m pip install -q --no-index --no-deps --no-compile --force-reinstall /tmp/gw/*.whl 2>&1 | grep -v "^WARNING\|dependency conflicts\|requires" || true
site=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$PWD" "$PWD/client" > "$site/musicgen-checkout.pth"
# onnxruntime-gpu links the CUDA, cuBLAS and cuDNN of the image's nvidia-* wheels.
LD_LIBRARY_PATH=$(ls -d "$site"/nvidia/*/lib | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/sweep.log"
$py -c "import numpy, onnxruntime as o; print('numpy', numpy.__version__, 'onnxruntime', o.__version__, o.get_available_providers())" | tee -a "$out/sweep.log"

# Every fp16 variant is written beside fp32; text2music serves fp32 first (TF32 on), then fp16.
# fp16 vocoder left out: on these random weights it gave all-zero audio at batch > 1 (refused by the server).
fp16=audioldm_unet=fp16,audioldm_vae_decoder=fp16
$py benchmarks/weightless.py materialize /tmp/gw/graphs /tmp/repo --device gpu --precision "$fp16" \
  --text2music precision=fp32 tf32=true max_active=16 max_batch_requests=16 capture_lengths=5.12
sweep() {
  $py benchmarks/sweep.py --repository /tmp/repo --pipelines text2music --text2music-modes onnxruntime \
    --steps 20 --length 5.12 --local-repeats 5 --out-dir "$out" "$@" 2>&1 | tee -a "$out/sweep.log"
}
server_logs() {  # $OUT brings back 8 files: the reports, this log, and the server's log only when it failed
  [ "$status" = 0 ] || cp build/sweep-tritonserver-*.log "$out/" 2>/dev/null || true
}
note="one H200, onnxruntime-gpu 1.31.1 CUDA EP, CUDA graphs captured at load, max_active=16; weightless graphs with random weights (benchmarks/weightless.py)"
status=0
sweep --concurrency 1 2 4 8 16 --protocols grpc http --name sweep-audioldm-s-h200-tf32 --note "$note, fp32 with TF32" || status=$?
server_logs
if [ "$status" = 0 ]; then
  sed -i "s/key: \"precision\" value: { string_value: \"fp32\" }/key: \"precision\" value: { string_value: \"$fp16\" }/" /tmp/repo/text2music/config.pbtxt
  grep precision /tmp/repo/text2music/config.pbtxt
  sweep --concurrency 1 8 16 --protocols grpc --name sweep-audioldm-s-h200-fp16 --note "$note, fp16 UNet and VAE decoder, vocoder fp32 with TF32" || status=$?
  server_logs
fi
exit "$status"
