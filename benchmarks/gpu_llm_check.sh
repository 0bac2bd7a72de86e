#!/usr/bin/env bash
# GPU check for LLM serving (issue 6, item 6).
#
# On a machine with an NVIDIA GPU: installs the project's `vllm` extra (pip install -e
# '.[vllm]') unless vllm already imports, then runs benchmarks/gpu_llm_check.py: a small
# causal LM found on local disk (or two tiny Llama checkpoints built locally; never a hub
# download) registered as champion and challenger, served by vLLM directly and through the
# gateway, with TTFT / time per output token / output tokens per second per arm.
# Prints one JSON object on stdout (progress goes to stderr).
# Exit 0: pass, or skipped because there is no NVIDIA GPU. 1: a check failed. 2: vllm could
# not be installed.
#
# Env: PYTHON (interpreter; default the project's .venv, else python3), GPU_LLM_CHECK_WORKDIR
# (default /tmp/gpu_llm_check), GATEWAY_LLM_WEIGHTS (a local weights directory to use),
# GPU_LLM_CHECK_ARGS (extra arguments for gpu_llm_check.py, e.g. "--requests 32 --eager").
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKDIR=${GPU_LLM_CHECK_WORKDIR:-/tmp/gpu_llm_check}
PIP_TIMEOUT_S=${GPU_LLM_CHECK_PIP_TIMEOUT_S:-1500}
CHECK_TIMEOUT_S=${GPU_LLM_CHECK_TIMEOUT_S:-1800}

log() { echo "gpu_llm_check: $*" >&2; }
finish() { # status reason exit_code
  printf '{"check": "gpu_llm", "status": "%s", "reason": "%s"}\n' "$1" "$2"
  exit "$3"
}

has_nvidia_gpu() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -q '^GPU '
    return
  fi
  compgen -G '/dev/nvidia[0-9]*' >/dev/null
}

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || continue
    command -v "$candidate"
    return 0
  done
  return 1
}

main() {
  has_nvidia_gpu || finish skipped "no NVIDIA GPU: nvidia-smi lists none and no /dev/nvidiaN" 0
  mkdir -p "$WORKDIR"
  local py rc
  py=$(pick_python) || finish error "no Python >= 3.11 found" 2
  log "python: $py"
  if ! "$py" -c 'import vllm' >/dev/null 2>&1; then
    log "installing the vllm extra into $("$py" -c 'import sys; print(sys.prefix)')" \
        "(several GB; up to ${PIP_TIMEOUT_S}s)"
    (cd "$ROOT" && timeout "$PIP_TIMEOUT_S" "$py" -m pip install -q \
        --disable-pip-version-check -e '.[vllm]' >&2) ||
      finish error "pip install -e '.[vllm]' failed or timed out" 2
    "$py" -c 'import vllm' >/dev/null 2>&1 || finish error "vllm still does not import" 2
  fi
  log "vllm $("$py" -c 'import vllm; print(vllm.__version__)' 2>/dev/null)"
  # shellcheck disable=SC2086  # GPU_LLM_CHECK_ARGS is a list of arguments
  PYTHONPATH="$ROOT" GPU_LLM_CHECK_WORKDIR="$WORKDIR" timeout "$CHECK_TIMEOUT_S" \
    "$py" "$ROOT/benchmarks/gpu_llm_check.py" ${GPU_LLM_CHECK_ARGS:-}
  rc=$?
  [ "$rc" -eq 124 ] && finish fail "gpu_llm_check.py timed out after ${CHECK_TIMEOUT_S}s" 1
  exit "$rc"
}

main "$@"
