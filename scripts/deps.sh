#!/bin/sh
# Checks that the Debian packages given as arguments are installed. As root it installs the
# missing ones (apt-get update first); otherwise it prints the one line that would.
set -u
missing=""
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "coroscope: installing missing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || { echo "coroscope: apt-get install failed for:$missing" >&2; exit 1; }
    exit 0
fi
echo "coroscope: missing Debian packages; run as root:" >&2
echo "  apt-get update && apt-get install -y$missing" >&2
exit 1
