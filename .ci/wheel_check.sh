#!/usr/bin/env bash
# The wheel works without the checkout: builds tfbert's wheel, installs it in a
# new virtualenv (dependencies from PyPI), and runs .ci/wheel_smoke.py from a
# folder outside the repository (package data, entry point, export, op checks).
#   PYTHON=python3.11 .ci/wheel_check.sh      (make wheel-check)
set -euo pipefail
repository="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/tfbert-wheel-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

# Build from a copy of what git knows (tracked or new, not ignored, not
# deleted): a build/ folder left in the checkout could ship stale modules.
mkdir "$work/source"
(
    cd "$repository"
    git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md tfbert |
        while IFS= read -r -d '' file; do
            if [ -f "$file" ]; then printf '%s\0' "$file"; fi
        done |
        xargs -0 cp --parents -t "$work/source"
)

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/source"
built=$SECONDS
"$work/venv/bin/python" -m pip install --quiet "$work"/dist/tfbert-*.whl
installed=$SECONDS

cp "$repository/.ci/wheel_smoke.py" "$work/smoke.py"
(cd "$work" && TF_CPP_MIN_LOG_LEVEL=2 "$work/venv/bin/python" smoke.py)
echo "wheel check passed: build $((built - started)) s, install $((installed - built)) s," \
    "smoke test $((SECONDS - installed)) s"
