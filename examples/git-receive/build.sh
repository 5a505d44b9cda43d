#!/bin/sh
# A stand-in for a buildpack builder (slugbuilder): run in the exported tree of a
# push, it prints what buildpack output looks like (`-----> ` section titles that
# start with ESC[1G to overwrite git's `remote: ` prefix, indented detail, a
# progress bar drawn with carriage returns, a warning on stderr), runs the app's
# own bin/compile when there is one, and exits with that build's status.
set -eu

# ESC[1G moves to column 1, so on the user's terminal the title replaces `remote: `.
section() {
  printf '\033[1G-----> %s\n' "$*"
}
detail() {
  printf '       %s\n' "$*"
}

section "Building ${APP_NAME:-app} at $(printf '%.8s' "${SOURCE_VERSION:-unknown}")"
files=$(find . -type f | wc -l | tr -d ' ')
if [ "$files" -eq 1 ]; then noun="file"; else noun="files"; fi
detail "Received $files $noun"
if [ -f bin/compile ]; then
  section "App with its own bin/compile detected"
else
  section "Static app detected"
fi

section "Restoring cache"
i=0
while [ "$i" -le 10 ]; do
  bar=$(printf '%*s' "$i" '' | tr ' ' '#')
  printf '\r       [%-10s] %3d%%' "$bar" $((i * 10))
  i=$((i + 1))
done
printf '\n'
echo "       warning: no cache yet, so this build starts from scratch" >&2

section "Compiling"
status=0
if [ -f bin/compile ]; then
  if [ -x bin/compile ]; then
    ./bin/compile || status=$?
  else
    sh bin/compile || status=$?
  fi
else
  detail "Nothing to compile"
fi

if [ "$status" -ne 0 ]; then
  printf '\033[1G\033[31m !     Build failed: bin/compile exited with status %s\033[0m\n' \
    "$status" >&2
  exit "$status"
fi
section "Build succeeded"
