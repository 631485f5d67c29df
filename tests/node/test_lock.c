/* node.lock: a second process cannot take a data directory that a live pattod holds, is told
 * which process holds it, and can take it once the holder is gone. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/node.h"
#include "tmpdir.h"

#include <sys/wait.h>

/* Try the lock in a child process; returns the child's node_err, and its message in msg. */
static node_err try_in_child(const char *dir, char *msg, size_t msglen)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        node_errmsg m = { { 0 } };
        int fd = -1;
        node_err err = node_lock_acquire(dir, &fd, &m);
        ssize_t w = write(fds[1], m.text, strlen(m.text));
        (void)w;
        node_lock_release(fd);
        _exit((int)err);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, msglen - 1);
    msg[n > 0 ? n : 0] = 0;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return (node_err)WEXITSTATUS(status);
}

static void second_process_is_refused(void **state)
{
    (void)state;
    char *dir = tmpdir_new();
    assert_non_null(dir);
    int fd = -1;
    node_errmsg msg;
    assert_int_equal(node_lock_acquire(dir, &fd, &msg), NODE_OK);
    char text[512];
    assert_int_equal(try_in_child(dir, text, sizeof(text)), NODE_ELOCKED);
    char pid[32];
    snprintf(pid, sizeof(pid), "process %ld", (long)getpid());
    assert_non_null(strstr(text, pid));
    assert_non_null(strstr(text, "in use by another pattod"));
    node_lock_release(fd);
    assert_int_equal(try_in_child(dir, text, sizeof(text)), NODE_OK);
    tmpdir_free(dir);
}

static void missing_directory_is_io_error(void **state)
{
    (void)state;
    int fd = -1;
    node_errmsg msg;
    assert_int_equal(node_lock_acquire("/nonexistent/patto", &fd, &msg), NODE_EIO);
    assert_non_null(strstr(msg.text, "/nonexistent/patto/pattod.lock"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(second_process_is_refused),
        cmocka_unit_test(missing_directory_is_io_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
