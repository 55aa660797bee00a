#!/usr/bin/env bash
# Component latency of the real-size AudioLDM-s graphs on a lent GPU machine (onnxruntime-gpu, CUDA EP),
# with the same machine's CPU provider side by side. Run by the device tool from the repository root, after
# the onnxruntime-gpu wheel parts (../shared/tools/gpu-wheels) were copied to /tmp/gw by earlier calls and with
# .gpu/graphs (benchmarks/weightless.py strip build/repo_audioldm_s .gpu/graphs) carried: the graphs travel
# without weights and get random ones there, which is all a latency number needs.
set -euo pipefail
cat /tmp/gw/part.* > "/tmp/gw/$(cat /tmp/gw/NAME)"
python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/gw/*.whl
export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
out=${OUT:-/tmp/out}
run() {  # torch first: it loads the CUDA libraries onnxruntime-gpu links against
  python3 -c "import torch, runpy, sys; sys.argv = ['benchmarks/components.py'] + sys.argv[1:]; \
runpy.run_path('benchmarks/components.py', run_name='__main__')" "$@"
}
run --repository .gpu/graphs --backends onnxruntime --device gpu --repeats 20 --out "$out/components-gpu-audioldm-s.md"
run --repository .gpu/graphs --backends onnxruntime --device cpu --threads 16 --repeats 3 --out "$out/components-gpu-host-cpu-audioldm-s.md"
