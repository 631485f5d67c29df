/* One pattod per data directory: an fcntl write lock on DATA/pattod.lock, held for the life
 * of the process and released by the kernel if it dies, so a crash never leaves a stale lock.
 * May call: common.c. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

node_err node_lock_acquire(const char *dir, int *fd, node_errmsg *msg)
{
    if (dir == NULL || fd == NULL)
        return NODE_EINVAL;
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/pattod.lock", dir) >= (int)sizeof(path))
        return node__fail(msg, NODE_EINVAL, "data directory path is too long: %s", dir);
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0)
        return node__fail(msg, NODE_EIO, "cannot open %s: %s", path, strerror(errno));
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(f, F_SETLK, &fl) != 0) {
        int e = errno;
        struct flock who = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        long pid = fcntl(f, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? (long)who.l_pid : 0;
        close(f);
        if (e == EACCES || e == EAGAIN)
            return node__fail(msg, NODE_ELOCKED,
                "%s is in use by another pattod (process %ld); stop it first", dir, pid);
        return node__fail(msg, NODE_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || write(f, pid, (size_t)n) != n) {
        int e = errno;
        close(f);
        return node__fail(msg, NODE_EIO, "cannot write %s: %s", path, strerror(e));
    }
    *fd = f;
    return NODE_OK;
}

void node_lock_release(int fd)
{
    if (fd >= 0)
        close(fd);
}
