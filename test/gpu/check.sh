#!/usr/bin/env bash
# Check ssp_ros on a CUDA machine with torch preinstalled and no network, in under five minutes:
#   test/gpu/check.sh            (options go to test/gpu/gpu_check.py, e.g. --frames 20 --out /tmp/gpu-check)
# Prints torch on CUDA vs CPU, one AMP training step, `ssp bench` on CUDA, the paper model's image model vs SSP at
# 736x1280 beside the paper's A100 FPS, and whether TensorRT is importable; exits non-zero on a real failure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD:$PWD/training${PYTHONPATH:+:$PYTHONPATH}"  # the runtime and the training package
missing=$("$PY" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "timm", "cv2", "yaml", "numpy", "safetensors", "ssp_ros", "ssp_train")
               if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    echo "FAIL: python modules missing: $missing (install the packages' dependencies: pip install -e '.[torch]' -e ./training)"
    exit 1
fi
timeout "${SSP_GPU_CHECK_TIMEOUT:-290}" "$PY" test/gpu/gpu_check.py "$@"
rc=$?
if [ "$rc" -eq 124 ]; then
    echo "FAIL: the check ran past ${SSP_GPU_CHECK_TIMEOUT:-290} s"
fi
exit "$rc"
