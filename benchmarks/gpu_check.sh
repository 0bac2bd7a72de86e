#!/usr/bin/env bash
# GPU check for gpu_monitor's NVML source (issue 5, item 5).
#
# On a machine with an NVIDIA GPU: finds (or installs) a Python with CUDA torch and pynvml,
# then runs benchmarks/gpu_check.py: a child process holds a torch tensor of GPU_CHECK_GIB GiB
# and the check proves NvmlSource reads that child's per-process memory and the device memory.
# Prints one JSON object on stdout (progress goes to stderr).
# Exit 0: pass, or skipped because there is no NVIDIA GPU. 1: a check failed. 2: no usable
# Python/torch/pynvml could be prepared.
#
# Env: GPU_CHECK_GIB (default 2), GPU_CHECK_WORKDIR (default /tmp/gpu_check), PYTHON (an
# interpreter to try first), GPU_CHECK_TORCH (pip spec if torch must be installed,
# default torch==2.13.0).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKDIR=${GPU_CHECK_WORKDIR:-/tmp/gpu_check}
GIB=${GPU_CHECK_GIB:-2}
TORCH_SPEC=${GPU_CHECK_TORCH:-torch==2.13.0}
PIP_TIMEOUT_S=240
CHECK_TIMEOUT_S=240

log() { echo "gpu_check: $*" >&2; }
finish() { # status reason exit_code
  printf '{"check": "gpu_monitor_nvml", "status": "%s", "reason": "%s"}\n' "$1" "$2"
  exit "$3"
}

has_nvidia_gpu() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -q '^GPU '
    return
  fi
  compgen -G '/dev/nvidia[0-9]*' >/dev/null
}

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; }
cuda_torch_ok() {
  "$1" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' >/dev/null 2>&1
}
pynvml_ok() { PYTHONPATH="$2" "$1" -c 'import pynvml' >/dev/null 2>&1; }

find_cuda_python() {
  local candidate
  for candidate in "${PYTHON:-}" "$WORKDIR/venv/bin/python" "$ROOT/.venv/bin/python" \
                   python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if python_ok "$candidate" && cuda_torch_ok "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

install_torch_venv() {
  local base
  base=$(command -v python3) || return 1
  python_ok "$base" || { log "$base is older than 3.10"; return 1; }
  log "no Python with CUDA torch found; installing $TORCH_SPEC into $WORKDIR/venv"
  "$base" -m venv "$WORKDIR/venv" >&2 || return 1
  timeout "$PIP_TIMEOUT_S" "$WORKDIR/venv/bin/python" -m pip install -q \
    --disable-pip-version-check "$TORCH_SPEC" >&2 || return 1
  cuda_torch_ok "$WORKDIR/venv/bin/python"
}

# Prints the PYTHONPATH entry that makes `import pynvml` work for $1 ("" if it already does).
ensure_pynvml() {
  local py=$1 lib="$WORKDIR/pylib" copy
  pynvml_ok "$py" "" && return 0
  log "pynvml missing for $py; installing nvidia-ml-py into $lib"
  mkdir -p "$lib"
  if timeout 120 "$py" -m pip install -q --disable-pip-version-check --target "$lib" \
       nvidia-ml-py >&2 && pynvml_ok "$py" "$lib"; then
    echo "$lib"
    return 0
  fi
  # Offline: nvidia-ml-py is a single pure-Python file; reuse the project venv's copy.
  copy=$(find "$ROOT/.venv" -path '*site-packages/pynvml.py' 2>/dev/null | head -1)
  if [ -n "$copy" ]; then
    cp "$copy" "$lib/pynvml.py" && pynvml_ok "$py" "$lib" && { echo "$lib"; return 0; }
  fi
  return 1
}

main() {
  has_nvidia_gpu || finish skipped "no NVIDIA GPU: nvidia-smi lists none and no /dev/nvidiaN" 0
  mkdir -p "$WORKDIR"
  local py extra rc
  py=$(find_cuda_python) || { install_torch_venv && py="$WORKDIR/venv/bin/python"; } ||
    finish error "could not find or install a Python >= 3.10 with CUDA-enabled torch" 2
  log "python: $py"
  extra=$(ensure_pynvml "$py") || finish error "could not import or install pynvml" 2
  PYTHONPATH="$ROOT${extra:+:$extra}" timeout "$CHECK_TIMEOUT_S" \
    "$py" "$ROOT/benchmarks/gpu_check.py" --gib "$GIB" --require-gpu
  rc=$?
  [ "$rc" -eq 124 ] && finish fail "gpu_check.py timed out after ${CHECK_TIMEOUT_S}s" 1
  exit "$rc"
}

main "$@"
