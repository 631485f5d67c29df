/*
 * findidx.h - the find index (findidx.c): the terms `patto case find` looks up, kept in the
 * store's own database "find" (NODE_DB_FIND), in the same transaction as the scope state they
 * come from. Internal to node/src.
 *
 * Key layout (node/CONTROL.md, case.find):
 *   find  KIND term 0x00 case(16)  -> ""   a term of a case; KIND is
 *             'n' a name word (anagrafica.nome, cognome, nomi_varianti; folded: ASCII
 *                 lowercase letters and digits, accents transliterated), and each whole
 *                 name folded without spaces ("abdel rahman" also as "abdelrahman"),
 *             'p' the phonetic key of a name word (node__find_phonetic),
 *             'c' anagrafica.codice_fiscale (uppercase letters and digits),
 *             'b' anagrafica.data_nascita (YYYY-MM-DD),
 *             'd' documenti.permesso_numero (uppercase letters and digits);
 *         'R' case(16) scope       -> the terms of that (case, scope): len(1) KIND term, ...
 *         'D' case(16)             -> cognome 0 nome 0 data_nascita 0 codice_fiscale
 *                                     (the winning values, for lists)
 *   meta  "find"                   -> 1 (every state held was indexed)
 *
 * Only scopes whose state this node holds are indexed (it holds a key of them: it may read
 * them); node__ledger_scope_destroy drops a scope's terms with its state.
 */
#ifndef NODE_FINDIDX_H
#define NODE_FINDIDX_H

#include "ledger.h"

#define FIND_TERM_MAX 64   /* bytes of one term */
#define FIND_WORDS_MAX 8   /* words of a query */
#define FIND_CAND_MAX 1000 /* cases a query looks at before it says it was cut short */

/* Re-index (case c, scope) from its new state s (called by node__ledger_state_put); nothing
 * for a scope without indexed fields. */
node_err node__find_update(
    node_txn *t, const proto_case_id *c, const char *scope, const crdt_scope *s);
/* Drop every term of (case, scope) (called by node__ledger_scope_destroy). */
node_err node__find_drop(node_txn *t, const proto_case_id *c, const char *scope);
/* Whether the store has its "find" mark (every state held was indexed); *err on a store error.
 * node__ledger_find_build indexes a store without it, then sets it (node__find_built_mark). */
bool node__find_built(node_txn *t, node_err *err);
node_err node__find_built_mark(node_txn *t);

/* UTF-8 text folded for matching: accents and other Latin letters transliterated to ASCII
 * (glibc iconv //TRANSLIT under C.UTF-8), lowercase, every other character a space. Returns
 * the length written (out is NUL-terminated). */
size_t node__find_fold(const char *in, size_t n, char *out, size_t size);
/* The phonetic key of a folded word (letters only; "" for a word with digits). */
size_t node__find_phonetic(const char *word, char *out, size_t size);
/* Levenshtein distance of two short strings (at most FIND_TERM_MAX bytes each). */
size_t node__find_distance(const char *a, const char *b);

/* What lists show of a case: its winning anagrafica values ("" when absent). */
typedef struct find_summary {
    char cognome[201], nome[201], birth[11], cf[17];
} find_summary;
bool node__find_summary(node_txn *t, const proto_case_id *c, find_summary *out);

/* A query (node/CONTROL.md, case.find): what it looks for, and the cases that match, best
 * first. */
typedef enum find_kind { FIND_NAME, FIND_CODE, FIND_BIRTH } find_kind;
typedef struct find_hit {
    proto_case_id id;
    const char *scope;   /* where it matched: "anagrafica" or "documenti" (static) */
    const char *matched; /* "name", "name (phonetic)", "codice_fiscale", "data_nascita",
                          * "permesso_numero" (static) */
    unsigned score;      /* 0: exact; lower is better */
} find_hit;
typedef struct find_result {
    find_kind kind;
    char term[FIND_TERM_MAX + 1]; /* the date or code looked for, or the folded words */
    find_hit *hits;               /* malloc'd */
    size_t n;
    bool truncated; /* more than FIND_CAND_MAX cases matched the first word */
} find_result;
/* Errors: NODE_EINVAL with msg for a query with nothing to look for; NODE_ENOMEM. */
node_err node__find_query(
    node_txn *t, const char *query, bool fuzzy, find_result *out, node_errmsg *msg);
void node__find_result_free(find_result *r);

#endif
