# Sourced by the other scripts: `.venv` with the uv installer from requirements/tools.lock, and
# the package sources uv should use (the array `uv_sources`).
#
# uv does not read pip's configuration, so the find-links folders that pip is configured with
# (PIP_FIND_LINKS, `pip config`) are passed on. The locks name the CPU build of torch
# (`torch==X+cpu`); where no such folder holds it, it comes from PyTorch's CPU index
# (GPUBRIDGE_TORCH_INDEX_URL to use another).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
lock_python="3.11"

python_version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$python_version" != "$lock_python" ]; then
  echo "error: the locks in requirements/ are for CPython $lock_python; $python is $python_version." >&2
  echo "Set PYTHON to a Python $lock_python, or regenerate the locks for yours with ./scripts/lock." >&2
  exit 1
fi

if [ ! -x .venv/bin/uv ]; then
  echo "== Creating .venv with the uv installer (requirements/tools.lock)"
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install --disable-pip-version-check --no-deps --require-hashes \
    -r requirements/tools.lock
fi
uv="$root/.venv/bin/uv"

uv_sources=()
torch_found=""
find_links="${PIP_FIND_LINKS:-} $("$python" -m pip config get global.find-links 2>/dev/null || true)"
for link in $find_links; do
  link="${link#file://}"
  if [ -d "$link" ]; then
    uv_sources+=(--find-links "$link")
    if compgen -G "$link/torch-*+cpu-*.whl" >/dev/null; then torch_found=yes; fi
  fi
done
if [ -z "$torch_found" ]; then
  uv_sources+=(--extra-index-url "${GPUBRIDGE_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
    --index-strategy unsafe-best-match)
fi
