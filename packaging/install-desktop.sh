#!/usr/bin/env bash
# Add pmgui to the Linux desktop's application menu for the current user (or remove it).
#
#   packaging/install-desktop.sh [PMGUI_EXECUTABLE]   # default: `pmgui` found on PATH
#   packaging/install-desktop.sh --uninstall
#
# Installs the launcher (.desktop), the icon in every rendered size (hicolor theme) and the
# AppStream metadata under ${XDG_DATA_HOME:-~/.local/share}. Works from a source checkout and
# from the frozen app folder (dist/pmgui/, where build.sh copies this script). Needs no root.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
id="io.github.pmgui.pmgui"
sizes="16 24 32 48 64 128 256 512"

for icons in "$here/../pmgui/resources/icons" "$here/_internal/pmgui/resources/icons"; do
  [ -f "$icons/pmgui.svg" ] && break
done
share="$here"
[ -f "$share/$id.desktop" ] || share="$here/share"

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$data/applications/$id.desktop" "$data/metainfo/$id.metainfo.xml" \
        "$data/icons/hicolor/scalable/apps/$id.svg"
  for s in $sizes; do rm -f "$data/icons/hicolor/${s}x${s}/apps/$id.png"; done
  command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
  echo "pmgui removed from the application menu ($data)"
  exit 0
fi

exe="${1:-$(command -v pmgui || true)}"
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "pmgui: error: no pmgui executable (install pmgui first, or pass its path)" >&2
  exit 1
fi
exe="$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")"
if [ ! -f "$icons/pmgui.svg" ] || [ ! -f "$share/$id.desktop" ]; then
  echo "pmgui: error: icons or $id.desktop not found next to $0" >&2
  exit 1
fi

mkdir -p "$data/applications" "$data/metainfo" "$data/icons/hicolor/scalable/apps"
for s in $sizes; do
  mkdir -p "$data/icons/hicolor/${s}x${s}/apps"
  cp "$icons/pmgui-$s.png" "$data/icons/hicolor/${s}x${s}/apps/$id.png"
done
cp "$icons/pmgui.svg" "$data/icons/hicolor/scalable/apps/$id.svg"
cp "$share/$id.metainfo.xml" "$data/metainfo/$id.metainfo.xml"
# Exec= gets the absolute path, so the menu entry works without pmgui on PATH
sed "s|^Exec=.*|Exec=\"$exe\"|" "$share/$id.desktop" > "$data/applications/$id.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$data/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
echo "pmgui added to the application menu: $data/applications/$id.desktop -> $exe"
