#!/usr/bin/env bash
# cli/po/update.sh: the message catalogue of `patto` (cli/README.md, "Language").
#
#   cli/po/update.sh          extract the messages of cli/src/*.c into cli/po/patto.pot
#                             (xgettext) and merge them into cli/po/it.po (msgmerge): then
#                             translate what is new or fuzzy in it.po
#   cli/po/update.sh --check  change nothing; exit 1 unless patto.pot is what the sources give,
#                             and it.po translates every message of it (none empty, none fuzzy,
#                             no obsolete entry left, formats that match): the test cli.po
#
# Needs GNU gettext (Debian: gettext).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
po=$root/cli/po
check=no
case "${1:-}" in
    --check) check=yes ;;
    "") ;;
    *) echo "update.sh: unknown option '$1' (--check or nothing)" >&2; exit 1 ;;
esac

extract() { # $1: the .pot to write
    local common=(--language=C --from-code=UTF-8 --add-comments=TRANSLATORS:
        --add-location=file --sort-by-file --package-name=patto --output="$1")
    # The sentences of the exit codes (CLI_ERRORS in cli.h, printed through _(cli_strerror())),
    # then every _() and N_() of cli/src.
    (cd "$root" && xgettext "${common[@]}" --keyword=X:3 cli/include/cli/cli.h \
        && xgettext "${common[@]}" --join-existing --keyword=_ --keyword=N_ --keyword=P_:1,2 cli/src/*.c)
}

if [[ $check == no ]]; then
    extract "$po/patto.pot"
    msgmerge --quiet --update --backup=none --no-fuzzy-matching --add-location=file \
        --sort-by-file "$po/it.po" "$po/patto.pot"
    msgattrib --no-obsolete --output-file="$po/it.po" "$po/it.po"
    msgfmt --check --statistics -o /dev/null "$po/it.po"
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
extract "$tmp/patto.pot"
if ! diff -u <(grep -v '^"POT-Creation-Date:' "$po/patto.pot") \
        <(grep -v '^"POT-Creation-Date:' "$tmp/patto.pot") > "$tmp/diff"; then
    echo "cli.po: cli/po/patto.pot is not what xgettext extracts from cli/src (run cli/po/update.sh and translate):"
    head -40 "$tmp/diff"
    fail=1
fi
# Every message of the sources has a translation (msgcmp: missing, empty and fuzzy entries
# count as untranslated), and it.po has none that the sources lack.
if ! msgcmp "$po/it.po" "$tmp/patto.pot" 2> "$tmp/cmp"; then
    echo "cli.po: messages without an Italian translation in cli/po/it.po:"
    head -40 "$tmp/cmp"
    fail=1
fi
if ! msgcmp --use-untranslated --use-fuzzy "$tmp/patto.pot" "$po/it.po" 2> "$tmp/cmp"; then
    echo "cli.po: cli/po/it.po has messages the sources no longer have:"
    head -40 "$tmp/cmp"
    fail=1
fi
if [[ -n $(msgattrib --only-obsolete "$po/it.po") ]]; then
    echo "cli.po: cli/po/it.po has obsolete (#~) entries; run cli/po/update.sh"
    fail=1
fi
if [[ -n $(msgattrib --only-fuzzy "$po/it.po") ]]; then
    echo "cli.po: cli/po/it.po has fuzzy entries:"
    msgattrib --only-fuzzy "$po/it.po" | head -40
    fail=1
fi
if ! msgfmt --check --statistics -o /dev/null "$po/it.po" 2> "$tmp/stats"; then
    echo "cli.po: msgfmt --check refuses cli/po/it.po:"
    cat "$tmp/stats"
    fail=1
elif grep -Eq 'untranslated|fuzzy' "$tmp/stats"; then
    echo "cli.po: $(cat "$tmp/stats")"
    fail=1
fi
[[ $fail == 0 ]] && echo "cli.po: $(cat "$tmp/stats")"
exit $fail
