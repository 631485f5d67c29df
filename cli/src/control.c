/*
 * control.c - the CLI's side of the control socket (node/CONTROL.md): the only file of cli/
 * that uses nng. One request, one answer, then the socket is closed.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#define CONTROL_URL "ipc://control.sock"
#define CONTROL_MAX_ANSWER (16 * 1024 * 1024) /* NNG_OPT_RECVMAXSZ: ARCHITECTURE.md house rule 3   \
                                               */
/* How long the CLI waits for the node's answer, from the moment it dials (cli/README.md). */
#define CONTROL_TIMEOUT_MS 30000
/* Tests only (cli/README.md): a shorter wait, 1 to CONTROL_TIMEOUT_MS ms. */
#define CONTROL_TIMEOUT_ENV "PATTO_TEST_TIMEOUT_MS"
/* nng 1.5.2 redials after a random delay below NNG_OPT_RECONNMINT and has no "never" (an
 * infinite duration wraps in its arithmetic): a day makes a redial within our 30 s unlikely, and
 * the pipe callback below ends the wait before one could happen anyway. */
#define CONTROL_NO_REDIAL_MS (24 * 3600 * 1000)

/*
 * A request must reach the node at most once (case new is not idempotent), so req0 never
 * resends and the dialer does not redial. When the connection drops while the CLI waits, nng's pipe
 * callback cancels the pending receive at once instead of letting it run into the timeout.
 * Static: the callback runs on an nng thread and may race with the end of cli__call.
 */
static struct {
    pthread_mutex_t mu;
    nng_aio *aio; /* the pending receive, or NULL */
    bool lost;    /* the pipe to the node is gone */
    uintptr_t gen; /* the call being made: a late callback of an earlier call's socket (one
                      process may call several times, patto import) changes nothing */
} watch = { PTHREAD_MUTEX_INITIALIZER, NULL, false, 0 };

static void pipe_removed_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void)pipe;
    (void)ev;
    pthread_mutex_lock(&watch.mu);
    if ((uintptr_t)arg != watch.gen) {
        pthread_mutex_unlock(&watch.mu);
        return;
    }
    watch.lost = true;
    if (watch.aio != NULL)
        nng_aio_cancel(watch.aio);
    pthread_mutex_unlock(&watch.mu);
}

/* Wait for the answer up to wait_ms (owned message in *out, free with nng_msg_free). */
static int receive(nng_socket sock, int wait_ms, nng_msg **out)
{
    nng_aio *aio;
    int rv = nng_aio_alloc(&aio, NULL, NULL);
    if (rv != 0)
        return rv;
    nng_aio_set_timeout(aio, wait_ms);
    nng_recv_aio(sock, aio);
    pthread_mutex_lock(&watch.mu);
    watch.aio = aio;
    if (watch.lost)
        nng_aio_cancel(aio);
    pthread_mutex_unlock(&watch.mu);
    nng_aio_wait(aio);
    pthread_mutex_lock(&watch.mu);
    watch.aio = NULL;
    bool lost = watch.lost;
    pthread_mutex_unlock(&watch.mu);
    rv = nng_aio_result(aio);
    if (rv == 0)
        *out = nng_aio_get_msg(aio);
    else if (rv == NNG_ECANCELED && lost)
        rv = NNG_ECONNSHUT;
    nng_aio_free(aio);
    return rv;
}

static uint64_t request_id(void)
{
    /* Unique enough to pair an answer with its request on a socket used once. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
}

static int timeout_ms(void)
{
    const char *s = getenv(CONTROL_TIMEOUT_ENV);
    if (s == NULL || s[0] == '\0')
        return CONTROL_TIMEOUT_MS;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno == 0 && *end == '\0' && v >= 1 && v <= CONTROL_TIMEOUT_MS ? (int)v
                                                                           : CONTROL_TIMEOUT_MS;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left of the wait that ends at deadline, at least 1 ms (0 would not wait at all). */
static int left_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    return left > 0 ? (int)left : 1;
}

/* One synchronous dial on its own thread, so that the caller can stop waiting for it. */
typedef struct dial_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nng_dialer dialer;
    bool done;
    int rv;
} dial_wait;

static void *dial_thread(void *arg)
{
    dial_wait *w = arg;
    int rv = nng_dialer_start(w->dialer, 0);
    pthread_mutex_lock(&w->mu);
    w->rv = rv;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* One attempt, given up at deadline (NNG_ETIMEDOUT, the dialer closed). */
static int dial_once(nng_dialer dialer, int64_t deadline)
{
    dial_wait w = { .dialer = dialer, .done = false, .rv = 0 };
    pthread_condattr_t attr;
    pthread_t thread;
    bool mu = false, at = false, cv = false;
    int rv = NNG_ENOMEM;
    if (!(mu = pthread_mutex_init(&w.mu, NULL) == 0) || !(at = pthread_condattr_init(&attr) == 0)
        || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0
        || !(cv = pthread_cond_init(&w.cv, &attr) == 0)
        || pthread_create(&thread, NULL, dial_thread, &w) != 0)
        goto done;
    struct timespec until = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L };
    int waited = 0;
    pthread_mutex_lock(&w.mu);
    while (!w.done && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&w.cv, &w.mu, &until);
    bool gave_up = !w.done;
    pthread_mutex_unlock(&w.mu);
    if (gave_up)
        nng_dialer_close(dialer); /* ends the dial: the thread returns */
    pthread_join(thread, NULL);
    rv = gave_up ? NNG_ETIMEDOUT : w.rv;
done:
    if (cv)
        pthread_cond_destroy(&w.cv);
    if (at)
        pthread_condattr_destroy(&attr);
    if (mu)
        pthread_mutex_destroy(&w.mu);
    return rv;
}

/*
 * Connect, waiting no later than deadline. A node that is not there refuses at once. One that
 * accepts the connection but does not answer (hung, stopped) makes nng 1.5.2 give up the
 * connection's handshake after its fixed 10 s: the CLI dials again until its own deadline, so
 * that one timeout governs the whole wait. No request has been sent before the dial succeeds.
 */
static int dial(nng_dialer dialer, int64_t deadline)
{
    int rv;
    do
        rv = dial_once(dialer, deadline);
    while (rv == NNG_ETIMEDOUT && now_ms() < deadline);
    return rv;
}

/* The node accepted the connection but gave no answer in time. */
static cli_err no_answer(cli__ctx *ctx, int waited_ms)
{
    char waited[32];
    if (waited_ms % 1000 == 0)
        snprintf(waited, sizeof waited, "%d s", waited_ms / 1000);
    else
        snprintf(waited, sizeof waited, "%d.%d s", waited_ms / 1000, waited_ms % 1000 / 100);
    return cli__fail(ctx, CLI_EUNREACHABLE,
        _("the node at %s does not answer (waited %s): the command may or may not have been done"),
        ctx->dir, waited);
}

static cli_err unreachable(cli__ctx *ctx, int rv)
{
    if (rv == NNG_EPERM)
        return cli__fail(ctx, CLI_EUNREACHABLE,
            _("cannot reach the node: %s/control.sock: permission denied (the socket belongs "
              "to the node's group; is your user in it?)"),
            ctx->dir);
    return cli__fail(ctx, CLI_EUNREACHABLE,
        _("cannot reach the node: %s/control.sock (is pattod running?)"), ctx->dir);
}

/* The answer: a control-response (its JSON payload) or a control-error (its code and message). */
static cli_err read_answer(cli__ctx *ctx, const char *command, uint64_t id, const uint8_t *msg,
    size_t len, json_object **payload)
{
    proto_limits lim;
    proto_limits_default(&lim);
    lim.max_message = CONTROL_MAX_ANSWER;
    unsigned kind = 0;
    proto_diag diag = { 0, NULL };
    proto_err perr = proto_peek(msg, len, &lim, &kind, &diag);
    if (perr != PROTO_OK)
        return cli__fail(ctx, CLI_EINTERNAL, _("the node's answer to %s cannot be read: %s (%s)"),
            command, proto_strerror(perr), diag.reason != NULL ? diag.reason : "no detail");
    if (kind == PROTO_K_CTL_ERROR) {
        proto_ctl_error e;
        perr = proto_ctl_error_decode(msg, len, &lim, &e, &diag);
        if (perr != PROTO_OK)
            return cli__fail(ctx, CLI_EINTERNAL,
                _("the node's error answer cannot be read: %s (%s)"),
                proto_strerror(perr), diag.reason != NULL ? diag.reason : "no detail");
        if (e.id != id)
            return cli__fail(ctx, CLI_EINTERNAL,
                _("the node answered another request (id %llu, expected %llu)"),
                (unsigned long long)e.id, (unsigned long long)id);
        cli_err code
            = e.code >= CLI_EUSAGE && e.code <= CLI_EINTERNAL ? (cli_err)e.code : CLI_EINTERNAL;
        if (e.message.len == 0)
            return cli__fail(
                ctx, code, _("the node refused %s: %s"), command, _(cli_strerror(code)));
        return cli__fail(ctx, code, "%.*s", (int)e.message.len, (const char *)e.message.p);
    }
    if (kind != PROTO_K_CTL_RESPONSE)
        return cli__fail(ctx, CLI_EINTERNAL,
            _("the node answered %s with a %s message instead of a control-response"), command,
            proto_kind_name(kind));
    proto_ctl_response r;
    perr = proto_ctl_response_decode(msg, len, &lim, &r, &diag);
    if (perr != PROTO_OK)
        return cli__fail(ctx, CLI_EINTERNAL, _("the node's answer to %s cannot be read: %s (%s)"),
            command, proto_strerror(perr), diag.reason != NULL ? diag.reason : "no detail");
    if (r.id != id)
        return cli__fail(ctx, CLI_EINTERNAL,
            _("the node answered another request (id %llu, expected %llu)"),
            (unsigned long long)r.id, (unsigned long long)id);
    /* json-c wants a NUL after the text to finish a top-level number; the payload has none. */
    char *text = malloc(r.payload.len + 1);
    if (text == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory reading the node's answer"));
    if (r.payload.len > 0)
        memcpy(text, r.payload.p, r.payload.len);
    text[r.payload.len] = '\0';
    cli__ctx tmp = { 0 };
    cli_err err = cli__json_parse(&tmp, "the node's answer", text, r.payload.len, payload);
    free(text);
    if (err != CLI_OK)
        return cli__fail(ctx, CLI_EINTERNAL, _("%s (command %s)"), tmp.msg, command);
    return CLI_OK;
}

cli_err cli__call(cli__ctx *ctx, const char *command, const proto_bytes *args, size_t nargs,
    json_object **payload)
{
    *payload = NULL;
    if (ctx->dir == NULL || ctx->dir[0] == '\0')
        return cli__fail(ctx, CLI_EUSAGE,
            _("no data directory: give --dir DATA or set PATTO_DIR to the node's directory"));
    if (chdir(ctx->dir) != 0)
        return cli__fail(ctx, CLI_EUNREACHABLE, _("cannot reach the node: cannot enter %s: %s"),
            ctx->dir, strerror(errno));

    cli_err err = CLI_OK;
    proto_bytes *all = calloc(nargs + 1, sizeof *all);
    proto_buf req = { NULL, 0 };
    nng_socket sock = NNG_SOCKET_INITIALIZER;
    bool opened = false;
    nng_msg *answer = NULL;
    if (all == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        goto done;
    }
    all[0] = (proto_bytes) { (const uint8_t *)ctx->operator_name, strlen(ctx->operator_name) };
    for (size_t i = 0; i < nargs; i++)
        all[i + 1] = args[i];
    uint64_t id = request_id();
    proto_ctl_request r = {
        .id = id,
        .command = { (const uint8_t *)command, strlen(command) },
        .args = all,
        .nargs = nargs + 1,
    };
    proto_err perr = proto_ctl_request_encode(&r, &req);
    if (perr != PROTO_OK) {
        err = cli__fail(ctx, perr == PROTO_ELIMIT ? CLI_EINPUT : CLI_EINTERNAL,
            _("cannot encode the %s request: %s"), command, proto_strerror(perr));
        goto done;
    }

    int wait_ms = timeout_ms();
    int64_t deadline = now_ms() + wait_ms;
    pthread_mutex_lock(&watch.mu);
    watch.gen++;
    watch.lost = false;
    void *gen = (void *)watch.gen;
    pthread_mutex_unlock(&watch.mu);
    int rv = nng_req0_open(&sock);
    if (rv != 0) {
        err = cli__fail(
            ctx, CLI_EINTERNAL, _("cannot open a control socket: %s"), nng_strerror(rv));
        goto done;
    }
    opened = true;
    nng_dialer dialer;
    /* A request is not idempotent (case new): never resend it. */
    if ((rv = nng_socket_set_ms(sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE)) != 0
        || (rv = nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_removed_cb, gen)) != 0
        || (rv = nng_dialer_create(&dialer, sock, CONTROL_URL)) != 0
        || (rv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, CONTROL_MAX_ANSWER)) != 0
        || (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMINT, CONTROL_NO_REDIAL_MS)) != 0
        || (rv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMAXT, CONTROL_NO_REDIAL_MS)) != 0) {
        err = cli__fail(
            ctx, CLI_EINTERNAL, _("cannot set up the control socket: %s"), nng_strerror(rv));
        goto done;
    }
    if ((rv = dial(dialer, deadline)) != 0) {
        err = rv == NNG_ETIMEDOUT ? no_answer(ctx, wait_ms) : unreachable(ctx, rv);
        goto done;
    }
    if ((rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, left_ms(deadline))) != 0
        || (rv = nng_send(sock, req.p, req.len, 0)) != 0) {
        err = rv == NNG_ETIMEDOUT ? no_answer(ctx, wait_ms) : unreachable(ctx, rv);
        goto done;
    }
    if ((rv = receive(sock, left_ms(deadline), &answer)) != 0) {
        answer = NULL;
        if (rv == NNG_ETIMEDOUT)
            err = no_answer(ctx, wait_ms);
        else
            err = cli__fail(ctx, CLI_EUNREACHABLE,
                _("lost the node at %s/control.sock before it answered (%s); the command may "
                  "or may not have been applied"),
                ctx->dir, nng_strerror(rv));
        goto done;
    }
    err = read_answer(ctx, command, id, nng_msg_body(answer), nng_msg_len(answer), payload);
done:
    if (answer != NULL)
        nng_msg_free(answer);
    if (opened)
        nng_close(sock);
    proto_buf_free(&req);
    free(all);
    return err;
}
