/* node.config: the configuration file is read, validated, and every error names the file and
 * the line (or the missing key). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "internal.h" /* node__budget_split */
#include "node/node.h"
#include "tmpdir.h"

typedef struct fixture {
    char *dir;
    char path[4400];
    node_config cfg;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->dir = tmpdir_new()) == NULL)
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/pattod.conf", f->dir);
    node_config_defaults(&f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    node_config_fini(&f->cfg);
    tmpdir_free(f->dir);
    free(f);
    return 0;
}

static node_err load(fixture *f, const char *text, node_errmsg *msg)
{
    assert_int_equal(write_file(f->dir, "pattod.conf", text), 0);
    memset(msg, 0, sizeof(*msg));
    return node_config_load(f->path, &f->cfg, msg);
}

static const char *const good = "; a comment\n"
                                "[node]\n"
                                "org = comune-1\n"
                                "role = comune\n"
                                "listen = tcp://127.0.0.1:7401\n"
                                "operator = sportello-1\n"
                                "log_level = debug\n"
                                "[store]\n"
                                "map_size_mb = 64\n"
                                "max_size_mb = 4096\n"
                                "[sync]\n"
                                "anti_entropy_ms = 1000\n"
                                "[network]\n"
                                "admin_pub = 00112233445566778899aabbccddeeff"
                                "00112233445566778899AABBCCDDEEFF\n"
                                "rekey_notice_hours = 96\n"
                                "[dial]\n"
                                "cpia-1 = tcp://127.0.0.1:9001\n"
                                "prefettura-1 = tcp://127.0.0.1:9002\n";

static void reads_every_key(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(load(f, good, &msg), NODE_OK);
    assert_string_equal(f->cfg.org, "comune-1");
    assert_string_equal(f->cfg.role, "comune");
    assert_string_equal(f->cfg.listen, "tcp://127.0.0.1:7401");
    assert_string_equal(f->cfg.operator_name, "sportello-1");
    assert_int_equal(f->cfg.log_level, NODE_LOG_DEBUG);
    assert_int_equal(f->cfg.map_size, UINT64_C(64) << 20);
    assert_int_equal(f->cfg.map_size_max, UINT64_C(4096) << 20);
    assert_int_equal(f->cfg.anti_entropy_ms, 1000);
    assert_int_equal(f->cfg.rekey_notice_ms, UINT64_C(96) * 3600000);
    assert_int_equal(f->cfg.max_message_bytes, UINT64_C(16) << 20); /* default kept */
    assert_int_equal(f->cfg.ndials, 2);
    assert_string_equal(node_config_dial_url(&f->cfg, "cpia-1"), "tcp://127.0.0.1:9001");
    assert_string_equal(node_config_dial_url(&f->cfg, "prefettura-1"), "tcp://127.0.0.1:9002");
    assert_null(node_config_dial_url(&f->cfg, "cpi-1"));
    assert_int_equal(f->cfg.admin_pub[0], 0x00);
    assert_int_equal(f->cfg.admin_pub[1], 0x11);
    assert_int_equal(f->cfg.admin_pub[31], 0xff);
    assert_string_equal(f->cfg.schema, "schema.json");
}

/* Each bad file, the error code, and text the message must contain (file:line first). */
#define ADMIN                                                                                      \
    "[network]\nadmin_pub = "                                                                      \
    "0000000000000000000000000000000000000000000000000000000000000000\n"

static void errors_name_file_and_line(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *text;
        node_err err;
        const char *says;
    } cases[] = {
        { "[node]\norg = Comune!\nrole = comune\nlisten = tcp://127.0.0.1:1\n", NODE_ECONFIG,
            ":2: org 'Comune!' is not a valid org id" },
        { "[node]\norg = comune-1\nrole = sindaco\nlisten = tcp://127.0.0.1:1\n", NODE_ECONFIG,
            ":3: role 'sindaco' is not one of" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = http://x\n", NODE_ECONFIG,
            ":4: listen 'http://x' is not a tcp://HOST:PORT URL" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\ncolour = blue\n",
            NODE_ECONFIG, ":5: unknown key 'colour' in [node]" },
        { "[nodo]\norg = comune-1\n", NODE_ECONFIG, ":2: unknown section [nodo]" },
        { "[node]\norg = comune-1\norg = comune-2\n", NODE_ECONFIG, ":3: org is given twice" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n[store]\n"
          "map_size_mb = lots\n",
            NODE_ECONFIG, ":6: map_size_mb must be a whole number from 1 to" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n[sync]\n"
          "max_message_bytes = 10\n",
            NODE_ECONFIG, ":6: max_message_bytes must be a whole number from 65536" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n[dial]\n"
          "cpia-1 = tcp://127.0.0.1:2\ncpia-1 = tcp://127.0.0.1:3\n",
            NODE_ECONFIG, ":7: [dial] cpia-1 is given twice" },
        { "[node]\norg = comune-1\nthis line has no equals sign\n", NODE_ECONFIG, ":3: " },
        { "[node]\norg = comune-1\nrole = comune\n", NODE_ECONFIG,
            "[node] needs org, role and listen (missing: listen)" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n" ADMIN
          "[store]\nmap_size_mb = 100\nmax_size_mb = 10\n",
            NODE_ECONFIG, "map_size_mb is larger than max_size_mb" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n", NODE_ECONFIG,
            "[network] needs admin_pub" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\nmemory_mb = 16\n",
            NODE_ECONFIG, ":5: memory_mb must be a whole number from 32 to 1048576" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\nmemory_mb = "
          "64\n" ADMIN "[sync]\nheld_headers_mb = 5\n",
            NODE_ECONFIG,
            "[sync] held_headers_mb = 5 is more than its share of [node] memory_mb = 64 (a "
            "sixteenth, 4): raise memory_mb or lower held_headers_mb" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n[network]\n"
          "admin_pub = 12zz\n",
            NODE_ECONFIG, ":6: admin_pub must be 64 hexadecimal digits" },
        { "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n" ADMIN
          "schema = ../etc/passwd\n",
            NODE_ECONFIG, ":7: schema must be a file name inside the data directory" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        node_errmsg msg;
        node_config_fini(&f->cfg);
        node_config_defaults(&f->cfg);
        node_err err = load(f, cases[i].text, &msg);
        if (err != cases[i].err || strstr(msg.text, cases[i].says) == NULL
            || strstr(msg.text, f->path) != msg.text)
            fail_msg("case %zu: got %s \"%s\", want %s containing \"%s\"", i, node_strerror(err),
                msg.text, node_strerror(cases[i].err), cases[i].says);
    }
}

/* One budget: the default split adds up to it, held_headers_mb lowers its share alone, and
 * the lists' counts follow from their bytes. */
static void memory_budget_split(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(load(f, good, &msg), NODE_OK);
    assert_int_equal(f->cfg.memory_bytes, UINT64_C(128) << 20); /* the default */
    node_budget b;
    node__budget_split(&f->cfg, &b);
    size_t mib = (size_t)1 << 20;
    assert_int_equal(b.total, 128 * mib);
    assert_int_equal(b.inq, 32 * mib);
    assert_int_equal(b.park, 24 * mib);
    assert_int_equal(b.held, 8 * mib);
    assert_int_equal(b.rx, 16 * mib);
    assert_int_equal(b.tx, 16 * mib);
    assert_int_equal(b.lists, 8 * mib);
    /* the rest, 3/16, for what is not split (the store's write transaction, caches, tables) */
    assert_int_equal(b.total - (b.inq + b.park + b.held + b.rx + b.tx + b.lists), 24 * mib);
    assert_true(b.wants > 18000 && b.waits > 18000); /* 8 MiB at 224 bytes an entry, half each */

    size_t wants128 = b.wants, waits128 = b.waits;

    assert_int_equal(load(f,
                         "[node]\norg = comune-1\nrole = comune\nlisten = tcp://127.0.0.1:1\n"
                         "memory_mb = 256\n" ADMIN "[sync]\nheld_headers_mb = 10\n",
                         &msg),
        NODE_OK);
    node__budget_split(&f->cfg, &b);
    assert_int_equal(b.total, 256 * mib);
    assert_int_equal(b.held, 10 * mib); /* lower than its share, 16 */
    assert_int_equal(b.inq, 64 * mib);
    assert_true(b.wants >= 2 * wants128 && b.wants <= 2 * wants128 + 1);
    assert_true(b.waits >= 2 * waits128 && b.waits <= 2 * waits128 + 1);
}

static void failed_load_keeps_previous_config(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    assert_int_equal(load(f, good, &msg), NODE_OK);
    assert_int_equal(load(f, "[node]\norg = BAD\n", &msg), NODE_ECONFIG);
    assert_string_equal(f->cfg.org, "comune-1");
    assert_int_equal(f->cfg.ndials, 2);
}

static void missing_file_is_io_error(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    char path[4500];
    snprintf(path, sizeof(path), "%s/nope.conf", f->dir);
    assert_int_equal(node_config_load(path, &f->cfg, &msg), NODE_EIO);
    assert_non_null(strstr(msg.text, "nope.conf"));
    assert_non_null(strstr(msg.text, "No such file"));
}

static const char *const base = "[node]\norg = comune-1\nrole = comune\n"
                                "[network]\nadmin_pub = 00112233445566778899aabbccddeeff"
                                "00112233445566778899aabbccddeeff\n";

/* A listen URL that binds every address cannot be dialled: peers need an advertised one. */
static void advertise_separates_bind_from_dial(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    char text[512];
    snprintf(text, sizeof(text), "%s[node]\nlisten = tcp://0.0.0.0:7401\n", base);
    assert_int_equal(load(f, text, &msg), NODE_ECONFIG);
    assert_non_null(strstr(msg.text, "advertise"));
    snprintf(text, sizeof(text), "%s[node]\nlisten = tcp://[::]:7401\n", base);
    assert_int_equal(load(f, text, &msg), NODE_ECONFIG);
    snprintf(text, sizeof(text),
        "%s[node]\nlisten = tcp://0.0.0.0:7401\nadvertise = tcp://comune-1.example:7401\n", base);
    assert_int_equal(load(f, text, &msg), NODE_OK);
    assert_string_equal(f->cfg.listen, "tcp://0.0.0.0:7401");
    assert_string_equal(node_config_advertise(&f->cfg), "tcp://comune-1.example:7401");
    snprintf(text, sizeof(text), "%s[node]\nlisten = tcp://127.0.0.1:7401\n", base);
    assert_int_equal(load(f, text, &msg), NODE_OK);
    assert_string_equal(node_config_advertise(&f->cfg), "tcp://127.0.0.1:7401");
    snprintf(text, sizeof(text),
        "%s[node]\nlisten = tcp://127.0.0.1:7401\nadvertise = tcp://0.0.0.0:7401\n", base);
    assert_int_equal(load(f, text, &msg), NODE_ECONFIG);
    assert_non_null(strstr(msg.text, "cannot be dialled"));
    snprintf(text, sizeof(text),
        "%s[node]\nlisten = tcp://127.0.0.1:7401\nadvertise = tcp://bad host:1\n", base);
    assert_int_equal(load(f, text, &msg), NODE_ECONFIG);
    assert_non_null(strstr(msg.text, "advertise"));
}

/* Operator names are text for people: no control character can reach a log line. */
static void operator_is_text(void **state)
{
    fixture *f = *state;
    node_errmsg msg;
    char text[512];
    snprintf(text, sizeof(text), "%s[node]\nlisten = tcp://127.0.0.1:1\noperator = a\tb\n", base);
    assert_int_equal(load(f, text, &msg), NODE_ECONFIG);
    assert_non_null(strstr(msg.text, "operator"));
}

static void strerror_covers_every_code(void **state)
{
    (void)state;
    for (int e = 0; e < NODE_ERR_COUNT; e++)
        assert_true(strlen(node_strerror((node_err)e)) > 0);
    assert_string_equal(node_strerror(NODE_ERR_COUNT), "unknown node error");
}

static void log_lines_are_key_value(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    node_log_set_output(out);
    node_log_set_level(NODE_LOG_INFO);
    NODE_INFO("peer.up", "org=%s lag=%d", "cpia-1", 3);
    NODE_DEBUG("hidden", "x=%d", 1);
    NODE_ERROR("store.fail", "path=%s", "/var/lib/patto");
    node_log_set_output(NULL);
    fclose(out);
    assert_non_null(strstr(buf, " level=info event=peer.up org=cpia-1 lag=3\n"));
    assert_non_null(strstr(buf, " level=error event=store.fail path=/var/lib/patto\n"));
    assert_null(strstr(buf, "hidden"));
    assert_true(strncmp(buf, "ts=", 3) == 0);
    assert_int_equal(buf[3 + 23], 'Z'); /* ts=YYYY-MM-DDTHH:MM:SS.mmmZ */
    free(buf);
    node_log_level lv;
    assert_int_equal(node_log_level_parse("warn", &lv), NODE_OK);
    assert_int_equal(lv, NODE_LOG_WARN);
    assert_int_equal(node_log_level_parse("loud", &lv), NODE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_name_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_budget_split, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_load_keeps_previous_config, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_file_is_io_error, setup, teardown),
        cmocka_unit_test_setup_teardown(advertise_separates_bind_from_dial, setup, teardown),
        cmocka_unit_test_setup_teardown(operator_is_text, setup, teardown),
        cmocka_unit_test(strerror_covers_every_code),
        cmocka_unit_test(log_lines_are_key_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
