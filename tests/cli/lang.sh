#!/usr/bin/env bash
# cli.lang: patto speaks Italian when the locale is Italian and English otherwise, through the
# catalogue msgfmt put in the build tree (cli/README.md, "Language"); --json output and exit
# codes are the same in both. Usage: lang.sh PATTO
#
# The Italian runs work whether or not it_IT.UTF-8 is generated on this machine (a fresh
# Debian has only C.UTF-8): patto falls back to C.UTF-8 with LANGUAGE=it then.
set -euo pipefail
patto=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/patto-lang-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli.lang: $*" >&2; exit 1; }

# run NAME ENV... -- ARGS...: patto with only ENV in its environment; NAME.out, NAME.err,
# NAME.rc in $tmp.
run() {
    local name=$1; shift
    local env=()
    while [[ $1 != -- ]]; do env+=("$1"); shift; done
    shift
    local rc=0
    env -i PATH="$PATH" "${env[@]}" "$patto" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err" || rc=$?
    echo "$rc" > "$tmp/$name.rc"
}
has() { # has NAME STREAM TEXT
    grep -qF -- "$3" "$tmp/$1.$2" || { echo "--- $1.$2:"; cat "$tmp/$1.$2"; fail "$1: no '$3' in its $2"; }
}
same() { # same A B: identical stdout, stderr and exit code
    for s in out err rc; do
        cmp -s "$tmp/$1.$s" "$tmp/$2.$s" || { diff -u "$tmp/$1.$s" "$tmp/$2.$s" || true; fail "$1 and $2 differ ($s)"; }
    done
}

it=(LANG=it_IT.UTF-8)
en=(LANG=C)

# --help
run help-it "${it[@]}" -- --help
run help-en "${en[@]}" -- --help
has help-it out "uso: patto [--dir DATA]"
has help-it out "codici di uscita"
has help-it out "crea la cartella dei dati, le chiavi e la configurazione di un nodo"
has help-en out "usage: patto [--dir DATA]"
has help-en out "exit codes"
run cmdhelp-it "${it[@]}" -- consent revoke --help
has cmdhelp-it out "Revoca solo il titolare del caso."
# a usage error: the same exit code, the sentence in each language
run usage-it "${it[@]}" -- case show
run usage-en "${en[@]}" -- case show
has usage-it err "patto: argomento mancante; uso: patto case show CASE [--labels]"
has usage-en err "patto: missing argument; usage: patto case show CASE [--labels]"
[[ $(cat "$tmp/usage-it.rc") == 1 && $(cat "$tmp/usage-en.rc") == 1 ]] || fail "a usage error must exit 1"
run unknown-it "${it[@]}" -- frobnicate
has unknown-it err "comando sconosciuto 'frobnicate'"
# with --json the error object is the same in both
run usage-json-it "${it[@]}" -- --json case show
run usage-json-en "${en[@]}" -- --json case show
same usage-json-it usage-json-en
has usage-json-it out '"message": "missing argument; usage: patto case show CASE [--labels]"'
run version-json-it "${it[@]}" -- --version --json
run version-json-en "${en[@]}" -- --version --json
same version-json-it version-json-en

# a local command's output for people, and its JSON (the random key aside) the same
run init-it "${it[@]}" -- network init "$tmp/admin-it"
run init-en "${en[@]}" -- network init "$tmp/admin-en"
has init-it out "chiave dell'amministratore di rete scritta in $tmp/admin-it/admin.key"
has init-en out "network admin key written to $tmp/admin-en/admin.key"
run init-json-it "${it[@]}" -- --json network init "$tmp/j"
run init-json-en "${en[@]}" -- --json network init "$tmp/j"
[[ $(cat "$tmp/init-json-it.rc") == 0 ]] || fail "network init --json failed"
# The second one is refused (the directory holds a key): the same error, in English.
has init-json-en out '"message": "'"$tmp/j"' already holds a network admin key'
sed -E 's/[0-9a-f]{64}/KEY/g' "$tmp/init-json-it.out" > "$tmp/a.json"
run init-json-en2 "${en[@]}" -- --json network init "$tmp/j2"
sed -E 's/[0-9a-f]{64}/KEY/; s#/j2"#/j"#' "$tmp/init-json-en2.out" > "$tmp/b.json"
cmp -s "$tmp/a.json" "$tmp/b.json" || { diff -u "$tmp/a.json" "$tmp/b.json"; fail "--json network init differs by language"; }
# a count in a sentence (ngettext): one purpose more than the defaults
run purpose-it "${it[@]}" -- network purpose "$tmp/admin-it" prova "una finalità di prova"
has purpose-it out "finalità prova aggiunta in $tmp/admin-it/manifest.json ("

# a remote command with no node to answer it: exit 4 in both, the sentence in each language
mkdir "$tmp/data"
run remote-it "${it[@]}" -- --dir "$tmp/data" status
run remote-en "${en[@]}" -- --dir "$tmp/data" status
has remote-it err "patto: impossibile raggiungere il nodo: $tmp/data/control.sock (pattod è in esecuzione?)"
has remote-en err "patto: cannot reach the node: $tmp/data/control.sock (is pattod running?)"
[[ $(cat "$tmp/remote-it.rc") == 4 && $(cat "$tmp/remote-en.rc") == 4 ]] || fail "no node must exit 4"
run remote-json-it "${it[@]}" -- --dir "$tmp/data" --json status
run remote-json-en "${en[@]}" -- --dir "$tmp/data" --json status
same remote-json-it remote-json-en

# How the Italian locale is chosen (cli/README.md, "Language")
run lcall-it LC_ALL=it_IT.UTF-8 LANG=C -- nonsense
has lcall-it err "comando sconosciuto"
run lcmsg-it LC_MESSAGES=it_IT.UTF-8 -- nonsense
has lcmsg-it err "comando sconosciuto"
run language-it LANG=C.UTF-8 LANGUAGE=it -- nonsense
has language-it err "comando sconosciuto"
run lcall-en LC_ALL=C LANG=it_IT.UTF-8 -- nonsense
has lcall-en err "unknown command"
run cen-it LANG=C LANGUAGE=it -- nonsense # GNU gettext: the C locale ignores LANGUAGE
has cen-it err "unknown command"
run de LANG=de_DE.UTF-8 -- nonsense
has de err "unknown command"
echo "cli.lang: Italian and English output as the locale asks, --json the same in both"
