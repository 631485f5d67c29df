/*
 * findidx.c - the find index (findidx.h): terms of the names, codice fiscale, birth date and
 * permit number of the cases whose scopes this node holds, kept beside their states, and the
 * queries of `patto case find`. May call: ledger.c, store.c, proto, crdt.
 */
#include "findidx.h"

#include <errno.h>
#include <iconv.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#define FIND_MARK "find"
#define FIND_MARK_VERSION 1
#define REV_MAX 4096 /* bytes of one 'R' record: terms of one (case, scope) beyond are dropped */

/* The indexed fields: which scope and field, as what kind of term. */
typedef struct indexed {
    const char *scope, *field;
    char kind;
} indexed;
static const indexed INDEXED[] = {
    { "anagrafica", "nome", 'n' },
    { "anagrafica", "cognome", 'n' },
    { "anagrafica", "nomi_varianti", 'n' },
    { "anagrafica", "codice_fiscale", 'c' },
    { "anagrafica", "data_nascita", 'b' },
    { "documenti", "permesso_numero", 'd' },
};
#define NINDEXED (sizeof(INDEXED) / sizeof(INDEXED[0]))

static bool scope_indexed(const char *scope)
{
    for (size_t i = 0; i < NINDEXED; i++)
        if (strcmp(INDEXED[i].scope, scope) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Folding, phonetic keys, distance                                                          */

/* One converter per thread, under C.UTF-8 (uselocale: no process-wide change): glibc's
 * //TRANSLIT follows the LC_CTYPE in force when iconv() runs. */
static _Thread_local iconv_t fold_cd = (iconv_t)-1;
static _Thread_local locale_t fold_loc = (locale_t)0;
static _Thread_local bool fold_tried;

static bool fold_open(void)
{
    if (!fold_tried) {
        fold_tried = true;
        fold_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        if (fold_loc != (locale_t)0)
            fold_cd = iconv_open("ASCII//TRANSLIT", "UTF-8");
    }
    return fold_cd != (iconv_t)-1;
}

size_t node__find_fold(const char *in, size_t n, char *out, size_t size)
{
    if (size == 0)
        return 0;
    char ascii[1024];
    size_t an = 0;
    if (n > 512)
        n = 512; /* a name or a query: longer text is cut */
    if (fold_open()) {
        locale_t old = uselocale(fold_loc);
        char *ip = (char *)(uintptr_t)in, *op = ascii;
        size_t il = n, ol = sizeof(ascii) - 1;
        while (il > 0) {
            if (iconv(fold_cd, &ip, &il, &op, &ol) != (size_t)-1)
                break;
            if (errno != EILSEQ || ol == 0)
                break;
            /* a byte that is not UTF-8 here: a space, and on */
            *op++ = ' ';
            ol--;
            ip++;
            il--;
        }
        iconv(fold_cd, NULL, NULL, NULL, NULL);
        uselocale(old);
        an = (size_t)(op - ascii);
    } else {
        for (size_t i = 0; i < n && an < sizeof(ascii) - 1; i++)
            ascii[an++] = (unsigned char)in[i] < 0x80 ? in[i] : ' ';
    }
    size_t k = 0;
    bool space = true;
    for (size_t i = 0; i < an && k + 1 < size; i++) {
        char ch = ascii[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        bool word = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!word) {
            if (!space)
                out[k++] = ' ';
            space = true;
            continue;
        }
        out[k++] = ch;
        space = false;
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = 0;
    return k;
}

static bool vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

/*
 * The phonetic key (node/CONTROL.md, case.find --fuzzy), made for the transliterations of one
 * name into Latin letters: 1. sch, tch, sh, ch become one sound S; kh h; gh g; ph f; th t; dh
 * d; dj j; ck k; ou u; then c, q k; x ks; z s; w v; v f; d t; y, j i; 2. a run of one letter
 * is one; 3. an h is dropped unless a vowel follows it; 4. the first letter stays (a vowel as
 * a), later vowels are dropped. Mohamed, Mohammed, Muhammad, Mouhamed: mhmt; Youssef, Yusuf,
 * Jusuf: asf; Aisha, Aicha, Ayesha: aS.
 */
size_t node__find_phonetic(const char *w, char *out, size_t size)
{
    char s[2 * FIND_TERM_MAX + 1];
    size_t n = 0, len = strlen(w);
    if (size == 0)
        return 0;
    out[0] = 0;
    for (size_t i = 0; i < len && n + 2 < sizeof(s);) {
        const char *p = w + i;
        if (*p < 'a' || *p > 'z')
            return 0; /* digits: a code, not a name */
        static const struct {
            const char *from;
            char to;
        } multi[] = { { "sch", 'S' }, { "tch", 'S' }, { "sh", 'S' }, { "ch", 'S' }, { "kh", 'h' },
            { "gh", 'g' }, { "ph", 'f' }, { "th", 't' }, { "dh", 't' }, { "dj", 'i' },
            { "ck", 'k' }, { "ou", 'u' } };
        bool done = false;
        for (size_t m = 0; m < sizeof(multi) / sizeof(multi[0]) && !done; m++) {
            size_t ml = strlen(multi[m].from);
            if (strncmp(p, multi[m].from, ml) == 0) {
                s[n++] = multi[m].to;
                i += ml;
                done = true;
            }
        }
        if (done)
            continue;
        char c = *p;
        switch (c) {
        case 'c':
        case 'q':
            c = 'k';
            break;
        case 'x':
            s[n++] = 'k';
            c = 's';
            break;
        case 'z':
            c = 's';
            break;
        case 'w':
        case 'v':
            c = 'f';
            break;
        case 'd':
            c = 't';
            break;
        case 'y':
        case 'j':
            c = 'i';
            break;
        default:
            break;
        }
        s[n++] = c;
        i++;
    }
    s[n] = 0;
    /* 2. runs */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || s[m - 1] != s[i])
            s[m++] = s[i];
    s[m] = 0;
    /* 3, 4 */
    size_t k = 0;
    for (size_t i = 0; i < m && k + 1 < size && k < 15; i++) {
        char c = s[i];
        if (i == 0) {
            out[k++] = vowel(c) ? 'a' : c;
            continue;
        }
        if (vowel(c))
            continue;
        if (c == 'h' && (i + 1 >= m || !vowel(s[i + 1])))
            continue;
        if (out[k - 1] == c)
            continue;
        out[k++] = c;
    }
    out[k] = 0;
    return k;
}

size_t node__find_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > FIND_TERM_MAX)
        la = FIND_TERM_MAX;
    if (lb > FIND_TERM_MAX)
        lb = FIND_TERM_MAX;
    size_t row[FIND_TERM_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Uppercase letters and digits of text (a code: codice fiscale, permit number). */
static size_t code_norm(const char *in, size_t n, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        char c = in[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            out[k++] = c;
    }
    out[k] = 0;
    return k;
}

/* ---------------------------------------------------------------------------------------- */
/* Terms of a state                                                                          */

typedef struct terms {
    uint8_t rev[REV_MAX]; /* len(1) KIND term, ... */
    size_t n;
} terms;

static void term_add(terms *t, char kind, const char *term, size_t len)
{
    if (len == 0 || len > FIND_TERM_MAX || t->n + 2 + len > sizeof(t->rev))
        return;
    /* once only */
    for (size_t i = 0; i < t->n; i += 1 + t->rev[i])
        if (t->rev[i] == len + 1 && t->rev[i + 1] == (uint8_t)kind
            && memcmp(t->rev + i + 2, term, len) == 0)
            return;
    t->rev[t->n++] = (uint8_t)(len + 1);
    t->rev[t->n++] = (uint8_t)kind;
    memcpy(t->rev + t->n, term, len);
    t->n += len;
}

static void name_terms(terms *t, const uint8_t *v, size_t len)
{
    char f[2 * FIND_TERM_MAX * 4 + 1], joined[FIND_TERM_MAX + 1];
    size_t fl = node__find_fold((const char *)v, len, f, sizeof(f)), jn = 0, words = 0;
    for (size_t i = 0; i < fl;) {
        size_t e = i;
        while (e < fl && f[e] != ' ')
            e++;
        char w[FIND_TERM_MAX + 1], key[16];
        size_t wl = e - i < FIND_TERM_MAX ? e - i : FIND_TERM_MAX;
        memcpy(w, f + i, wl);
        w[wl] = 0;
        term_add(t, 'n', w, wl);
        size_t kl = node__find_phonetic(w, key, sizeof(key));
        term_add(t, 'p', key, kl);
        if (jn + wl <= FIND_TERM_MAX) {
            memcpy(joined + jn, w, wl);
            jn += wl;
        }
        words++;
        i = e + 1;
    }
    if (words > 1)
        term_add(t, 'n', joined, jn);
}

static void value_terms(terms *t, char kind, const uint8_t *v, size_t len)
{
    char buf[FIND_TERM_MAX + 1];
    size_t n;
    switch (kind) {
    case 'n':
        name_terms(t, v, len);
        return;
    case 'b':
        term_add(t, 'b', (const char *)v, len);
        return;
    default:
        n = code_norm((const char *)v, len, buf, sizeof(buf));
        term_add(t, kind, buf, n);
        return;
    }
}

static void state_terms(const crdt_scope *s, const char *scope, terms *t)
{
    t->n = 0;
    for (size_t i = 0; i < NINDEXED; i++) {
        if (strcmp(INDEXED[i].scope, scope) != 0)
            continue;
        const char *field = INDEXED[i].field;
        size_t n = 0;
        crdt_reg_value rv;
        crdt_bytes b;
        if (crdt_register_count(s, field, &n) == CRDT_OK)
            for (size_t k = 0; k < n; k++)
                if (crdt_register_at(s, field, k, &rv) == CRDT_OK)
                    value_terms(t, INDEXED[i].kind, rv.value.p, rv.value.len);
        n = 0;
        if (crdt_set_count(s, field, &n) == CRDT_OK)
            for (size_t k = 0; k < n; k++)
                if (crdt_set_at(s, field, k, &b) == CRDT_OK)
                    value_terms(t, INDEXED[i].kind, b.p, b.len);
    }
}

/* The winning value of a register field as text in out ("" when none). */
static void winner(const crdt_scope *s, const char *field, char *out, size_t size)
{
    size_t n = 0;
    crdt_reg_value rv;
    out[0] = 0;
    if (crdt_register_count(s, field, &n) == CRDT_OK && n > 0
        && crdt_register_at(s, field, 0, &rv) == CRDT_OK) {
        size_t l = rv.value.len < size - 1 ? rv.value.len : size - 1;
        memcpy(out, rv.value.p, l);
        out[l] = 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Keeping the index                                                                         */

static size_t term_key(
    uint8_t *k, char kind, const uint8_t *term, size_t len, const proto_case_id *c)
{
    k[0] = (uint8_t)kind;
    memcpy(k + 1, term, len);
    k[1 + len] = 0;
    memcpy(k + 2 + len, c->b, 16);
    return 2 + len + 16;
}

static size_t rev_key(uint8_t *k, const proto_case_id *c, const char *scope)
{
    size_t sl = strlen(scope);
    k[0] = 'R';
    memcpy(k + 1, c->b, 16);
    memcpy(k + 17, scope, sl);
    return 17 + sl;
}

/* Delete the terms listed in rev (a copy: deletes move LMDB's pages). */
static node_err terms_del(node_txn *t, const proto_case_id *c, const uint8_t *rev, size_t n)
{
    uint8_t k[2 + FIND_TERM_MAX + 16];
    for (size_t i = 0; i + 1 < n;) {
        size_t l = rev[i];
        if (l < 2 || i + 1 + l > n)
            return NODE_ECORRUPT;
        size_t kl = term_key(k, (char)rev[i + 1], rev + i + 2, l - 1, c);
        node_err err = node_txn_del(t, NODE_DB_FIND, k, kl);
        if (err != NODE_OK && err != NODE_ENOTFOUND)
            return err;
        i += 1 + l;
    }
    return NODE_OK;
}

static node_err drop_rev(node_txn *t, const proto_case_id *c, const char *scope)
{
    uint8_t rk[17 + PROTO_SCOPE_NAME_MAX];
    size_t rl = rev_key(rk, c, scope);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_FIND, rk, rl, &v, &n);
    if (err == NODE_ENOTFOUND)
        return NODE_OK;
    if (err != NODE_OK)
        return err;
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return NODE_ENOMEM;
    memcpy(copy, v, n);
    err = terms_del(t, c, copy, n);
    free(copy);
    if (err == NODE_OK)
        err = node_txn_del(t, NODE_DB_FIND, rk, rl);
    return err == NODE_ENOTFOUND ? NODE_OK : err;
}

static node_err index_scope(
    node_txn *t, const proto_case_id *c, const char *scope, const crdt_scope *s)
{
    terms *tm = malloc(sizeof(*tm));
    if (tm == NULL)
        return NODE_ENOMEM;
    state_terms(s, scope, tm);
    uint8_t rk[17 + PROTO_SCOPE_NAME_MAX];
    size_t rl = rev_key(rk, c, scope);
    const void *v;
    size_t n;
    node_err err = node_txn_get(t, NODE_DB_FIND, rk, rl, &v, &n);
    bool same = err == NODE_OK && n == tm->n && memcmp(v, tm->rev, n) == 0;
    if (err == NODE_ENOTFOUND)
        err = NODE_OK;
    if (err == NODE_OK && !same) {
        err = drop_rev(t, c, scope);
        uint8_t k[2 + FIND_TERM_MAX + 16];
        for (size_t i = 0; err == NODE_OK && i < tm->n; i += 1 + tm->rev[i]) {
            size_t kl = term_key(k, (char)tm->rev[i + 1], tm->rev + i + 2, tm->rev[i] - 1u, c);
            err = node_txn_put(t, NODE_DB_FIND, k, kl, "", 0);
        }
        if (err == NODE_OK && tm->n > 0)
            err = node_txn_put(t, NODE_DB_FIND, rk, rl, tm->rev, tm->n);
    }
    if (err == NODE_OK && strcmp(scope, "anagrafica") == 0) {
        find_summary *sum = calloc(1, sizeof(*sum));
        char buf[sizeof(*sum)];
        if (sum == NULL) {
            free(tm);
            return NODE_ENOMEM;
        }
        winner(s, "cognome", sum->cognome, sizeof(sum->cognome));
        winner(s, "nome", sum->nome, sizeof(sum->nome));
        winner(s, "data_nascita", sum->birth, sizeof(sum->birth));
        winner(s, "codice_fiscale", sum->cf, sizeof(sum->cf));
        int bl = snprintf(buf, sizeof(buf), "%s%c%s%c%s%c%s", sum->cognome, 0, sum->nome, 0,
            sum->birth, 0, sum->cf);
        uint8_t dk[17] = { 'D' };
        memcpy(dk + 1, c->b, 16);
        err = node_txn_put(t, NODE_DB_FIND, dk, sizeof(dk), buf, (size_t)bl);
        free(sum);
    }
    free(tm);
    return err;
}

node_err node__find_update(
    node_txn *t, const proto_case_id *c, const char *scope, const crdt_scope *s)
{
    return scope_indexed(scope) ? index_scope(t, c, scope, s) : NODE_OK;
}

node_err node__find_drop(node_txn *t, const proto_case_id *c, const char *scope)
{
    node_err err = drop_rev(t, c, scope);
    if (err == NODE_OK && strcmp(scope, "anagrafica") == 0) {
        uint8_t dk[17] = { 'D' };
        memcpy(dk + 1, c->b, 16);
        if ((err = node_txn_del(t, NODE_DB_FIND, dk, sizeof(dk))) == NODE_ENOTFOUND)
            err = NODE_OK;
    }
    return err;
}

bool node__find_built(node_txn *t, node_err *err)
{
    const void *v;
    size_t n;
    *err = node_txn_get(t, NODE_DB_META, FIND_MARK, strlen(FIND_MARK), &v, &n);
    if (*err == NODE_OK)
        return true;
    if (*err == NODE_ENOTFOUND)
        *err = NODE_OK;
    return false;
}

node_err node__find_built_mark(node_txn *t)
{
    uint8_t mark = FIND_MARK_VERSION;
    return node_txn_put(t, NODE_DB_META, FIND_MARK, strlen(FIND_MARK), &mark, 1);
}

bool node__find_summary(node_txn *t, const proto_case_id *c, find_summary *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t dk[17] = { 'D' };
    memcpy(dk + 1, c->b, 16);
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_FIND, dk, sizeof(dk), &v, &n) != NODE_OK)
        return false;
    char *dst[4] = { out->cognome, out->nome, out->birth, out->cf };
    size_t cap[4]
        = { sizeof(out->cognome), sizeof(out->nome), sizeof(out->birth), sizeof(out->cf) };
    const char *p = v, *end = p + n;
    for (size_t i = 0; i < 4 && p <= end; i++) {
        const char *z = memchr(p, 0, (size_t)(end - p));
        size_t l = (size_t)((z != NULL ? z : end) - p);
        if (l >= cap[i])
            l = cap[i] - 1;
        memcpy(dst[i], p, l);
        dst[i][l] = 0;
        p = (z != NULL ? z : end) + 1;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Queries                                                                                   */

void node__find_result_free(find_result *r)
{
    free(r->hits);
    r->hits = NULL;
    r->n = 0;
}

/* A birth date typed as YYYY-MM-DD or dd/mm/yyyy (d/m/yyyy too) in out as YYYY-MM-DD. */
static bool query_date(const char *q, char out[11])
{
    unsigned a, b, c;
    int used = 0;
    if (sscanf(q, "%4u-%2u-%2u%n", &a, &b, &c, &used) == 3 && q[used] == 0 && used == 10)
        snprintf(out, 11, "%04u-%02u-%02u", a, b, c);
    else if (sscanf(q, "%2u/%2u/%4u%n", &a, &b, &c, &used) == 3 && q[used] == 0 && used >= 8)
        snprintf(out, 11, "%04u-%02u-%02u", c % 10000u, b % 100u, a % 100u);
    else
        return false;
    proto_date d;
    return proto_date_parse(out, 10, &d) == PROTO_OK;
}

typedef struct qword {
    char w[FIND_TERM_MAX + 1];
    char key[16];
} qword;

typedef struct cand_ctx {
    find_hit *v;
    size_t n, cap;
    bool truncated, oom;
    char kind;
    size_t plen; /* bytes of the prefix scanned (KIND term) */
    bool exact;  /* the term must end where the prefix does */
    const char *scope, *matched;
} cand_ctx;

static bool cand_push(cand_ctx *c, const uint8_t *id)
{
    for (size_t i = c->n; i-- > 0;)
        if (memcmp(c->v[i].id.b, id, 16) == 0)
            return true;
    if (c->n >= FIND_CAND_MAX) {
        c->truncated = true;
        return false;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 64;
        find_hit *nv = realloc(c->v, nc * sizeof(*nv));
        if (nv == NULL) {
            c->oom = true;
            return false;
        }
        c->v = nv;
        c->cap = nc;
    }
    find_hit *h = &c->v[c->n++];
    memcpy(h->id.b, id, 16);
    h->scope = c->scope;
    h->matched = c->matched;
    h->score = 0;
    return true;
}

static bool cand_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ctx)
{
    (void)val;
    (void)vlen;
    cand_ctx *c = ctx;
    const uint8_t *k = key;
    if (klen < c->plen + 17 || k[klen - 17] != 0)
        return true;
    if (c->exact && klen != c->plen + 17)
        return true;
    return cand_push(c, k + klen - 16);
}

static node_err scan(node_txn *t, cand_ctx *c, char kind, const char *term, bool exact,
    const char *scope, const char *matched)
{
    uint8_t p[1 + FIND_TERM_MAX + 1];
    size_t l = strlen(term);
    p[0] = (uint8_t)kind;
    memcpy(p + 1, term, l);
    c->plen = 1 + l;
    c->exact = exact;
    c->scope = scope;
    c->matched = matched;
    if (exact)
        p[1 + l] = 0; /* the NUL that ends the term */
    node_err err = node_txn_scan(t, NODE_DB_FIND, p, exact ? l + 2 : l + 1, cand_cb, c);
    return err != NODE_OK ? err : c->oom ? NODE_ENOMEM : NODE_OK;
}

/* How many keys start with KIND term (exact: the whole term), counted up to a cap: how
 * selective a query word is. */
typedef struct count_ctx {
    size_t n, cap, plen;
    bool exact;
} count_ctx;

static bool count_cb(const void *key, size_t klen, const void *val, size_t vlen, void *ctx)
{
    (void)key;
    (void)val;
    (void)vlen;
    count_ctx *c = ctx;
    if (!c->exact || klen == c->plen + 17)
        c->n++;
    return c->n < c->cap;
}

static size_t term_count(node_txn *t, char kind, const char *term, bool exact, size_t cap)
{
    uint8_t p[1 + FIND_TERM_MAX + 1];
    size_t l = strlen(term);
    p[0] = (uint8_t)kind;
    memcpy(p + 1, term, l);
    p[1 + l] = 0;
    count_ctx c = { 0, cap, 1 + l, exact };
    if (node_txn_scan(t, NODE_DB_FIND, p, exact ? l + 2 : l + 1, count_cb, &c) != NODE_OK)
        return cap;
    return c.n;
}

#define SELECT_CAP 256 /* keys counted per word to choose the one that gives the candidates */

/* Fuzzy matching of one name word against a query word: 2 + their edit distance when their
 * phonetic keys are equal, 3 + the distance when the keys are one edit apart and the words at
 * most FUZZY_NEAR_MAX edits (a typo or one more consonant: Ibrahim, Ibragim; Ahmed, Achmed);
 * else UINT32_MAX. */
#define FUZZY_NEAR_MAX 2
#define NEAR_KEY_MIN 3     /* letters of a key whose neighbours are looked up */
#define NEAR_WHEN_FEWER 20 /* ... when fewer cases than this match the word and its key */

static unsigned fuzzy_score(const char *word, const qword *q)
{
    char key[16];
    node__find_phonetic(word, key, sizeof(key));
    if (key[0] == 0 || q->key[0] == 0)
        return UINT32_MAX;
    if (strcmp(key, q->key) == 0)
        return 2 + (unsigned)node__find_distance(word, q->w);
    if (node__find_distance(key, q->key) != 1)
        return UINT32_MAX;
    size_t d = node__find_distance(word, q->w);
    return d <= FUZZY_NEAR_MAX ? 3 + (unsigned)d : UINT32_MAX;
}

/* The keys one edit away from key (a letter removed, changed or added), for the candidates of
 * a fuzzy query: fn(neighbour) for each (some repeat; most name no term). */
static const char KEY_LETTERS[] = "abfghklmnprstS";

static node_err key_neighbours(const char *key, node_err (*fn)(const char *, void *), void *ctx)
{
    size_t k = strlen(key);
    char v[18];
    node_err err = NODE_OK;
    for (size_t i = 0; i < k && err == NODE_OK; i++) { /* removed */
        memcpy(v, key, i);
        memcpy(v + i, key + i + 1, k - i);
        if (v[0] != 0)
            err = fn(v, ctx);
    }
    for (size_t i = 0; i < k && err == NODE_OK; i++) /* changed */
        for (const char *l = KEY_LETTERS; *l && err == NODE_OK; l++) {
            if (*l == key[i])
                continue;
            memcpy(v, key, k + 1);
            v[i] = *l;
            err = fn(v, ctx);
        }
    for (size_t i = 0; i <= k && k + 1 < sizeof(v) - 1 && err == NODE_OK; i++) /* added */
        for (const char *l = KEY_LETTERS; *l && err == NODE_OK; l++) {
            memcpy(v, key, i);
            v[i] = *l;
            memcpy(v + i + 1, key + i, k - i + 1);
            err = fn(v, ctx);
        }
    return err;
}

/* How well a case's name terms match each query word: 0 exact, 1 a prefix, with fuzzy
 * fuzzy_score's; UINT_MAX when some word matches nothing. */
static unsigned name_score(
    node_txn *t, const proto_case_id *c, const qword *qw, size_t nw, bool fuzzy, bool *phonetic)
{
    uint8_t rk[17 + PROTO_SCOPE_NAME_MAX];
    size_t rl = rev_key(rk, c, "anagrafica");
    const void *v;
    size_t n;
    if (node_txn_get(t, NODE_DB_FIND, rk, rl, &v, &n) != NODE_OK)
        return UINT32_MAX;
    const uint8_t *r = v;
    unsigned total = 0;
    *phonetic = false;
    for (size_t q = 0; q < nw; q++) {
        unsigned best = UINT32_MAX;
        size_t wl = strlen(qw[q].w), kl = strlen(qw[q].key);
        for (size_t i = 0; i + 1 < n && best > 0; i += 1u + r[i]) {
            size_t l = r[i] - 1u;
            const char *term = (const char *)r + i + 2;
            if (r[i + 1] == 'n' && l >= wl && memcmp(term, qw[q].w, wl) == 0) {
                unsigned s = l == wl ? 0 : 1;
                if (s < best)
                    best = s;
            } else if (fuzzy && r[i + 1] == 'n' && kl > 0 && best > 2 && l <= FIND_TERM_MAX) {
                char w[FIND_TERM_MAX + 1];
                memcpy(w, term, l);
                w[l] = 0;
                unsigned s = fuzzy_score(w, &qw[q]);
                if (s < best)
                    best = s;
            }
        }
        if (best == UINT32_MAX)
            return UINT32_MAX;
        *phonetic = *phonetic || best >= 2;
        total += best;
    }
    return total;
}

typedef struct near_ctx {
    node_txn *t;
    cand_ctx *c;
} near_ctx;

static node_err near_scan(const char *key, void *ctx)
{
    near_ctx *n = ctx;
    if (n->c->truncated)
        return NODE_OK;
    return scan(n->t, n->c, 'p', key, true, "anagrafica", "name");
}

static int by_score(const void *a, const void *b)
{
    const find_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return memcmp(x->id.b, y->id.b, 16);
}

node_err node__find_query(
    node_txn *t, const char *query, bool fuzzy, find_result *out, node_errmsg *msg)
{
    memset(out, 0, sizeof(*out));
    size_t ql = strlen(query);
    while (ql > 0 && query[ql - 1] == ' ')
        ql--;
    while (ql > 0 && *query == ' ') {
        query++;
        ql--;
    }
    char q[600];
    if (ql >= sizeof(q))
        return node__fail(msg, NODE_EINVAL, "the query is longer than %zu bytes", sizeof(q) - 1);
    memcpy(q, query, ql);
    q[ql] = 0;
    cand_ctx c = { 0 };
    node_err err = NODE_OK;
    char date[11], code[FIND_TERM_MAX + 1];
    size_t cl = code_norm(q, ql, code, sizeof(code));
    if (query_date(q, date)) {
        out->kind = FIND_BIRTH;
        snprintf(out->term, sizeof(out->term), "%s", date);
        err = scan(t, &c, 'b', date, true, "anagrafica", "data_nascita");
    } else if (strpbrk(q, "0123456789") != NULL
        && (strchr(q, ' ') == NULL || cl == 11 || cl == 16)) {
        /* one word with a digit, or 11 or 16 letters and digits with a digit among them
         * (a codice fiscale typed in groups): a codice fiscale or a permit number */
        out->kind = FIND_CODE;
        snprintf(out->term, sizeof(out->term), "%s", code);
        err = scan(t, &c, 'c', code, true, "anagrafica", "codice_fiscale");
        if (err == NODE_OK && !c.truncated)
            err = scan(t, &c, 'd', code, true, "documenti", "permesso_numero");
    } else {
        out->kind = FIND_NAME;
        char f[sizeof(q) * 2];
        size_t fl = node__find_fold(q, ql, f, sizeof(f));
        qword qw[FIND_WORDS_MAX];
        size_t nw = 0, longest = 0, fewest = SIZE_MAX;
        for (char *w = strtok(f, " "); w != NULL && nw < FIND_WORDS_MAX; w = strtok(NULL, " ")) {
            snprintf(qw[nw].w, sizeof(qw[nw].w), "%s", w);
            node__find_phonetic(qw[nw].w, qw[nw].key, sizeof(qw[nw].key));
            nw++;
        }
        /* the candidates come from the word that matches the fewest name terms (counted up to
         * a cap; the longest word among equals) */
        for (size_t i = 0; i < nw && fewest > 0; i++) {
            size_t n = term_count(t, 'n', qw[i].w, false, SELECT_CAP);
            if (fuzzy && qw[i].key[0] && n < SELECT_CAP)
                n += term_count(t, 'p', qw[i].key, true, SELECT_CAP - n);
            if (n < fewest || (n == fewest && strlen(qw[i].w) > strlen(qw[longest].w))) {
                fewest = n;
                longest = i;
            }
        }
        if (fl == 0 || nw == 0)
            return node__fail(msg, NODE_EINVAL,
                "'%s' has no letter or digit to look for: give a name, a codice fiscale, a "
                "birth date (YYYY-MM-DD or dd/mm/yyyy) or a permit number",
                q);
        snprintf(out->term, sizeof(out->term), "%.*s", (int)(sizeof(out->term) - 1), f);
        /* candidates from the longest word, then every word checked on each */
        err = scan(t, &c, 'n', qw[longest].w, false, "anagrafica", "name");
        if (err == NODE_OK && fuzzy && qw[longest].key[0] && !c.truncated)
            err = scan(t, &c, 'p', qw[longest].key, true, "anagrafica", "name");
        /* keys one edit away only when those spellings are few and the key is long enough to
         * keep its neighbours apart: they find typos, and bring in many near names besides */
        if (err == NODE_OK && fuzzy && strlen(qw[longest].key) >= NEAR_KEY_MIN
            && c.n < NEAR_WHEN_FEWER && !c.truncated) {
            near_ctx nc = { t, &c };
            err = key_neighbours(qw[longest].key, near_scan, &nc);
        }
        size_t w = 0;
        for (size_t i = 0; err == NODE_OK && i < c.n; i++) {
            bool phon;
            unsigned s = name_score(t, &c.v[i].id, qw, nw, fuzzy, &phon);
            if (s == UINT32_MAX)
                continue;
            c.v[i].score = s;
            c.v[i].matched = phon ? "name (phonetic)" : "name";
            c.v[w++] = c.v[i];
        }
        c.n = w;
    }
    if (err != NODE_OK) {
        free(c.v);
        return err;
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(*c.v), by_score);
    out->hits = c.v;
    out->n = c.n;
    out->truncated = c.truncated;
    return NODE_OK;
}
