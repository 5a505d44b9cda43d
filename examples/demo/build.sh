#!/bin/sh
# A stand-in for a buildpack build: section titles, indented output, colour,
# a progress bar drawn with carriage returns, stderr, and a line without a newline.
set -e
printf '\033[1G-----> Fetching dependencies\n'
for pkg in left-pad is-number chalk; do
  printf '       \033[32m+\033[0m %s\n' "$pkg"
done
printf '\033[1G-----> Compiling\n'
i=0
while [ $i -le 10 ]; do
  printf '\r       [%-10s] %3d%%' "$(printf '%*s' $i '' | tr ' ' '#')" $((i * 10))
  i=$((i + 1))
  sleep 0.05
done
printf '\n'
echo "       warning: this is what stderr looks like" >&2
printf '\033[1G-----> Build succeeded (no trailing newline next)\n'
printf 'done'
