#!/usr/bin/env bash
# Build the frozen one-folder app: dist/pmgui/pmgui starts without a Python installation.
#
#   python3 -m venv .venv && .venv/bin/pip install -e ".[build]" && bash packaging/build.sh
#
# Options (environment): PYTHON (default .venv/bin/python, else python3), DIST (default
# dist/), WORK (default build/pyinstaller/; both are gitignored). Prints the app's size.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
dist="${DIST:-$root/dist}"
work="${WORK:-$root/build/pyinstaller}"
if ! "$py" -c "import PyInstaller" 2>/dev/null; then
  echo "pmgui: error: PyInstaller is not installed for $py; run: $py -m pip install -e \".[build]\"" >&2
  exit 1
fi
start=$(date +%s)
"$py" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$dist" --workpath "$work" packaging/pmgui.spec
app="$dist/pmgui"
# Debug symbols out of the shared libraries (a third of the size). Not the executable (the
# Python archive is appended to it) and not wheel-vendored *.libs/ folders (numpy's
# OpenBLAS breaks when stripped); PyInstaller's own strip option would touch those too.
if [ "$(uname)" = Linux ] && command -v strip >/dev/null; then
  find "$app/_internal" -type f -name "*.so*" -not -path "*.libs/*" \
    -exec strip --strip-unneeded {} + 2>/dev/null || true
fi
# desktop integration next to the program: launcher, AppStream metadata, installer script
mkdir -p "$app/share"
cp packaging/io.github.pmgui.pmgui.desktop packaging/io.github.pmgui.pmgui.metainfo.xml "$app/share/"
cp packaging/install-desktop.sh "$app/"
cp LICENSE "$app/LICENSE.txt"
echo "built $app in $(( $(date +%s) - start )) s, $(du -sh "$app" | cut -f1)"
