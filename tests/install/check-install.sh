#!/bin/sh
# install.programs: `cmake --install` puts the three programs in one bin directory (with the
# systemd unit and the documents), they run from there, and the installed patto-testnet drives
# the patto and pattod installed beside it, not those of the build tree; patto finds its
# Italian messages in share/locale.
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" > /dev/null
for p in pattod patto patto-testnet; do
    [ -x "$prefix/bin/$p" ] || { echo "install.programs: $p was not installed in $prefix/bin"; exit 1; }
    "$prefix/bin/$p" --version > /dev/null || { echo "install.programs: $p --version failed"; exit 1; }
done
[ -f "$prefix/lib/systemd/system/pattod.service" ] || { echo "install.programs: no pattod.service"; exit 1; }
help=$("$prefix/bin/patto-testnet" --help)
for p in patto pattod; do
    printf '%s\n' "$help" | grep -q "^  $p *$prefix/bin/$p\$" \
        || { echo "install.programs: the installed patto-testnet does not drive $prefix/bin/$p:"; printf '%s\n' "$help" | tail -12; exit 1; }
done
# patto's Italian catalogue is installed and found from the installed program (share/locale).
[ -f "$prefix/share/locale/it/LC_MESSAGES/patto.mo" ] || { echo "install.programs: no share/locale/it/LC_MESSAGES/patto.mo"; exit 1; }
env -i LANG=it_IT.UTF-8 "$prefix/bin/patto" --help | grep -q "^uso: patto" \
    || { echo "install.programs: the installed patto does not speak Italian with LANG=it_IT.UTF-8"; exit 1; }
echo "install.programs: pattod, patto and patto-testnet installed and found beside each other"
