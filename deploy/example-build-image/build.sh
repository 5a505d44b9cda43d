#!/bin/sh
# A slugbuilder-style build: fetch the app, let the first buildpack that detects it compile
# it, pack the slug, upload it. Run by the relay ('phonehome-relay relay -- /builder/build.sh'),
# so everything printed here reaches the user's 'git push' live and byte for byte, and the
# exit status travels in FINISHED, not in the log. Hence no 'sleep 3 so stderr gets logged'
# before exiting, as build images of the polling era needed.
#
# Settings (environment): SOURCE_URL (a .tar.gz of the app; else APP_DIR is used as it is),
# APP_DIR (default /app), BUILDPACKS_DIR (default /buildpacks, one directory per buildpack
# with bin/detect and bin/compile), CACHE_DIR (default /tmp/cache), PUT_URL (where to PUT
# the slug; none skips the upload).
set -eu

app_dir=${APP_DIR:-/app}
buildpacks_dir=${BUILDPACKS_DIR:-/buildpacks}
cache_dir=${CACHE_DIR:-/tmp/cache}
slug=${SLUG_PATH:-/tmp/slug.tgz}

# ESC[1G moves to column 1, so the line overwrites git's "remote: " prefix.
puts_step() { printf '\033[1G-----> %s\n' "$*"; }
puts_warn() { printf '\033[1G !     %s\n' "$*" >&2; }

if [ -n "${SOURCE_URL:-}" ]; then
  puts_step "Fetching the app"
  mkdir -p "$app_dir"
  curl --fail --silent --show-error --location "$SOURCE_URL" | tar -xz -C "$app_dir"
fi

selected=""
for buildpack in "$buildpacks_dir"/*/; do
  [ -x "${buildpack}bin/detect" ] || continue
  if name=$("${buildpack}bin/detect" "$app_dir" 2>/dev/null); then
    selected=$buildpack
    break
  fi
done
if [ -z "$selected" ]; then
  puts_warn "No buildpack in $buildpacks_dir detected the app in $app_dir."
  exit 1
fi
puts_step "$name app detected"

mkdir -p "$cache_dir"
env_dir=$(mktemp -d)
"${selected}bin/compile" "$app_dir" "$cache_dir" "$env_dir"

puts_step "Compressing the slug"
tar -czf "$slug" -C "$app_dir" .
if [ -n "${PUT_URL:-}" ]; then
  puts_step "Uploading the slug"
  curl --fail --silent --show-error --upload-file "$slug" "$PUT_URL"
fi
puts_step "Compiled slug size is $(du -k "$slug" | cut -f1) KiB"
