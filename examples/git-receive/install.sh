#!/bin/sh
# Installs the phonehome pre-receive hook into git repositories, and writes the
# phonehome.env it reads beside it: sshd starts hooks with an almost empty
# environment, so everything the hook needs is written down at install time.
#
# Usage: install.sh REPOSITORY...
# Settings, from the environment of this script:
#   PHONEHOME_BIN     a compiled phonehome-builder to call (then Deno is not needed)
#   DENO              the deno binary for a source tree (default: deno on PATH, else the
#                     one `npx --yes deno@2.9.6` runs, as the README's "Try it" installs)
#   PHONEHOME_ROOT    the phonehome checkout (default: the one holding this script)
#   BUILD_PROGRAM     the build to run (default: build.sh beside this script)
#   BUILD_WORK_ROOT   where work directories go (default: $TMPDIR or /tmp at push time)
#   DENO_DIR          Deno's cache, recorded when set
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ "$#" -eq 0 ]; then
  echo "Usage: $0 REPOSITORY..." >&2
  exit 64
fi

# Prints NAME='VALUE' with VALUE quoted for the shell.
assignment() {
  printf "%s='%s'\n" "$1" "$(printf '%s' "$2" | sed "s/'/'\\\\''/g")"
}

if [ -n "${PHONEHOME_BIN:-}" ]; then
  runner=$(assignment PHONEHOME_BIN "$PHONEHOME_BIN")
else
  deno=${DENO:-$(command -v deno || true)}
  if [ -z "$deno" ] && command -v npx >/dev/null 2>&1; then
    # The deno that `npx --yes deno@2.9.6` runs, by its absolute path: the hook cannot use npx.
    deno=$(npx --yes deno@2.9.6 eval 'console.log(Deno.execPath())' 2>/dev/null || true)
  fi
  if [ -z "$deno" ] || [ ! -x "$deno" ]; then
    echo "Cannot find deno: set DENO to its path (with Node.js, npx --yes deno@2.9.6 eval" \
      "'console.log(Deno.execPath())' prints it), or PHONEHOME_BIN to a phonehome-builder." >&2
    exit 64
  fi
  root=${PHONEHOME_ROOT:-$(cd "$here/../.." && pwd)}
  if [ ! -f "$root/main.ts" ]; then
    echo "Cannot find main.ts in $root: set PHONEHOME_ROOT to the phonehome checkout." >&2
    exit 64
  fi
  runner="$(assignment PHONEHOME_DENO "$deno")
$(assignment PHONEHOME_ROOT "$root")"
fi

for repository in "$@"; do
  hooks=$(git -C "$repository" rev-parse --path-format=absolute --git-path hooks)
  mkdir -p "$hooks"
  cp "$here/pre-receive" "$hooks/pre-receive"
  chmod 755 "$hooks/pre-receive"
  {
    echo "# Written by $here/install.sh; read by the pre-receive hook beside it."
    echo "# Add phonehome settings with export, e.g. export SESSION_IDLE_INTERVAL=5000"
    echo "$runner"
    assignment BUILD_PROGRAM "${BUILD_PROGRAM:-$here/build.sh}"
    if [ -n "${BUILD_WORK_ROOT:-}" ]; then
      assignment BUILD_WORK_ROOT "$BUILD_WORK_ROOT"
    fi
    if [ -n "${DENO_DIR:-}" ]; then
      printf 'export %s\n' "$(assignment DENO_DIR "$DENO_DIR")"
    fi
  } >"$hooks/phonehome.env"
  echo "Installed the phonehome pre-receive hook in $hooks."
done
