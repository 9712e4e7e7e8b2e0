#!/usr/bin/env bash
# Install gpubridge into .venv from the committed locks (requirements/), for a purpose:
#   serve  the local model runtimes and the starter models (requirements/serve.lock)
#   test   the same plus the test tools (requirements/test.lock, a superset of serve.lock)
# Sourced by scripts/serve and scripts/test, it installs once and then only when a lock or
# pyproject.toml changes. Run directly (./scripts/bootstrap.sh test) it always re-applies the
# lock, which repairs an environment that drifted from it.
set -euo pipefail
purpose="${1:-serve}"
case "$purpose" in
  serve) sizes="about 3.0 GB on disk, mostly torch (CPU build) and the model runtimes" ;;
  test) sizes="about 3.3 GB on disk: the serve install plus the test tools" ;;
  *) echo "usage: bootstrap.sh serve|test" >&2; exit 2 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/uv-env.sh"

lock="requirements/$purpose.lock"
stamp_of() {
  cat "requirements/$1.lock" requirements/no-deps.lock pyproject.toml | sha256sum | cut -c1-16
}
stamp=".venv/.installed-$purpose-$(stamp_of "$purpose")"
sourced=""
[ "${BASH_SOURCE[0]}" != "$0" ] && sourced=yes
if [ -n "$sourced" ] && [ -f "$stamp" ]; then
  return 0 2>/dev/null || exit 0
fi

started=$SECONDS
packages="$(grep -c '^[A-Za-z0-9]' "$lock")"
echo "== Installing gpubridge ($purpose) into .venv from $lock: $packages packages,"
echo "   $sizes."
echo "   A first install downloads them (a few minutes on a fast connection); later ones reuse"
echo "   uv's cache, and later runs reuse .venv."
"$uv" pip install --python .venv/bin/python --require-hashes "${uv_sources[@]}" -r "$lock"
"$uv" pip install --python .venv/bin/python --require-hashes --no-deps "${uv_sources[@]}" \
  -r requirements/no-deps.lock
"$uv" pip install --python .venv/bin/python --no-deps -e .
# A package that no lock names any more (a dependency the new locks dropped) is removed, so
# that .venv holds what the locks say (tests/test_locked_environment.py checks it).
stale="$(.venv/bin/python - <<'PY'
import re
from importlib import metadata
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {"pip", "setuptools", "gpubridge"}
for lock in ("test", "no-deps", "tools"):
    text = open(f"requirements/{lock}.lock").read()
    locked |= {canon(n) for n in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)}
print(" ".join(sorted({canon(d.metadata["Name"]) for d in metadata.distributions()} - locked)))
PY
)"
if [ -n "$stale" ]; then
  echo "== Removing packages that no lock names: $stale"
  # shellcheck disable=SC2086  # one argument per package
  "$uv" pip uninstall --python .venv/bin/python $stale
fi
rm -f .venv/.installed-*
touch "$stamp"
# test.lock holds serve.lock with the same versions: a test install serves too.
if [ "$purpose" = test ]; then touch ".venv/.installed-serve-$(stamp_of serve)"; fi
echo "== .venv is ready ($purpose) after $((SECONDS - started)) s"
