/* See vmz_spawn.h. */
#ifdef __linux__
#define _GNU_SOURCE
#endif
#include "vmz_spawn.h"

#ifdef __linux__
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef __WALL
#define __WALL 0x40000000
#endif

#define VMZ_SPAWN_MAX_FDS 64
#define VMZ_SPAWN_MAX_MOUNTS 64

struct request {
    const char *path;
    char *const *argv;
    const int *fds;
    int nfds;
    pid_t pid;
    int pidfd;
    int result;
    int done;
    int supervise;
    const struct vmz_spawn_mounts *mounts;
    int step;
    int which;
    int exec_fd; /* the program, opened before the mounts could hide it; or -1 */
};

extern char **environ;

/* execv(r->path), unless the mounts hid the program that r->exec_fd
 * holds: then through that descriptor. By name where possible: before
 * Linux 6.14 a program run from a descriptor is named after its number
 * ("7" in ps), and an ELF program so keeps no descriptor of itself. */
static void exec_program(const struct request *r) {
    int fd = r->exec_fd;
    struct stat held, named;
    if (fd < 0) {
        execv(r->path, r->argv);
        return;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (fstat(fd, &held) == 0 && stat(r->path, &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino) {
        execv(r->path, r->argv);
        return;
    }
    syscall(SYS_execveat, fd, "", r->argv, environ, AT_EMPTY_PATH);
    if (errno == ENOENT) {
        /* A script: its interpreter reads it through /dev/fd/N, which
         * must stay open. */
        fcntl(fd, F_SETFD, 0);
        syscall(SYS_execveat, fd, "", r->argv, environ, AT_EMPTY_PATH);
    }
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct request *pending;
static int thread_error;

/* The host ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT): then the kernel
 * reaps a child that has exec'd as soon as it exits (exec resets the exit
 * signal to SIGCHLD), and its status is lost. So the child stays a small
 * supervisor that never execs: it runs the program as its own child (which
 * it may reap: its dispositions are the defaults), and ends the way that
 * child ended (the same exit status, or killed by the same signal). Killing
 * the supervisor kills the program (PR_SET_PDEATHSIG). Async-signal-safe
 * calls only. */
static void supervise(const struct request *r, int report_fd) {
    pid_t supervisor = getpid();
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != supervisor)
            _exit(127);
        exec_program(r);
        int err = errno;
        (void)!write(report_fd, &err, sizeof err);
        _exit(127);
    }
    int err = errno;
    if (pid < 0) {
        (void)!write(report_fd, &err, sizeof err);
        _exit(127);
    }
    /* The program has the descriptors now; the parent reads the report
     * pipe until the program's exec closes its copy. */
    syscall(SYS_close_range, 0U, ~0U, 0);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            _exit(127);
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        sigset_t one;
        signal(sig, SIG_DFL);
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        kill(getpid(), sig);
        _exit(128 + sig);
    }
    _exit(WEXITSTATUS(status));
}

/* Appends the decimal digits of `n` to `out` (async-signal-safe). */
static char *put_number(char *out, unsigned long n) {
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (k)
        *out++ = digits[--k];
    return out;
}

static char *put_text(char *out, const char *text, const char *end) {
    while (*text && out < end)
        *out++ = *text++;
    return out;
}

static int write_file(const char *path, const char *text, size_t len) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, len);
    int err = errno;
    close(fd);
    errno = err;
    return n == (ssize_t)len ? 0 : -1;
}

/* Maps `id` to itself in the new user namespace: "ID ID 1\n". */
static int map_id(const char *path, unsigned long id) {
    char line[64];
    char *p = put_number(line, id);
    *p++ = ' ';
    p = put_number(p, id);
    p = put_text(p, " 1\n", line + sizeof line);
    return write_file(path, line, (size_t)(p - line));
}

/* The mount flags a read-only bind remount must keep (in a user
 * namespace, the kernel refuses to drop the locked ones). */
static unsigned long kept_flags(const char *path) {
    struct statvfs st;
    if (statvfs(path, &st) != 0)
        return 0;
    unsigned long keep = 0;
    if (st.f_flag & ST_NOSUID) keep |= MS_NOSUID;
    if (st.f_flag & ST_NODEV) keep |= MS_NODEV;
    if (st.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
    if (st.f_flag & ST_NOATIME) keep |= MS_NOATIME;
    if (st.f_flag & ST_NODIRATIME) keep |= MS_NODIRATIME;
    if (st.f_flag & ST_RELATIME) keep |= MS_RELATIME;
    return keep;
}

/* Makes r->mounts in the child (see vmz_spawn_mounts). Returns 0, or an
 * errno with r->step and r->which set. Async-signal-safe calls only. */
static int make_mounts(struct request *r) {
    const struct vmz_spawn_mounts *m = r->mounts;
    unsigned long uid = getuid(), gid = getgid();
    char target[4096], source[64];
    const char *end = target + sizeof target - 1;
    r->which = -1;
    r->step = VMZ_MOUNT_STEP_UNSHARE;
    if (unshare(CLONE_NEWNS | (m->user_namespace ? CLONE_NEWUSER : 0)) != 0)
        return errno;
    if (m->user_namespace) {
        r->step = VMZ_MOUNT_STEP_ID_MAP;
        if (write_file("/proc/self/setgroups", "deny", 4) != 0 ||
            map_id("/proc/self/uid_map", uid) != 0 || map_id("/proc/self/gid_map", gid) != 0)
            return errno;
    }
    r->step = VMZ_MOUNT_STEP_PRIVATE;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return errno;
    /* Each source is opened here, in this namespace (a bind takes its
     * source from the caller's own namespace), and before the tmpfs
     * covers the root (a source may be below it); the mounts then take it
     * through /proc/self/fd. The descriptors close at exec. */
    int opened[VMZ_SPAWN_MAX_MOUNTS];
    if (m->count > VMZ_SPAWN_MAX_MOUNTS)
        return EINVAL;
    r->step = VMZ_MOUNT_STEP_OPEN;
    for (int i = 0; i < m->count; i++) {
        r->which = i;
        opened[i] = open(m->paths[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (opened[i] < 0)
            return errno;
    }
    r->which = -1;
    /* The program too may be below the root (a VMZ_VIRTIOFSD in /tmp):
     * then it runs from a descriptor opened now (exec_program), kept
     * above the child's descriptor range. */
    r->step = VMZ_MOUNT_STEP_PROGRAM;
    int exec_fd = open(r->path, O_PATH);
    if (exec_fd < 0)
        return errno;
    if (exec_fd < r->nfds) {
        int moved = fcntl(exec_fd, F_DUPFD, r->nfds);
        if (moved < 0)
            return errno;
        close(exec_fd);
        exec_fd = moved;
    }
    r->exec_fd = exec_fd;
    r->step = VMZ_MOUNT_STEP_TMPFS;
    if (mount("vmz-share", m->root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0755,size=64k") != 0)
        return errno;
    for (int i = 0; i < m->count; i++) {
        r->which = i;
        char *p = put_text(target, m->root, end);
        p = put_text(p, "/", end);
        p = put_text(p, m->names[i], end);
        *p = 0;
        char *s = put_text(source, "/proc/self/fd/", source + sizeof source - 1);
        s = put_number(s, (unsigned long)opened[i]);
        *s = 0;
        r->step = VMZ_MOUNT_STEP_MKDIR;
        if (mkdir(target, 0755) != 0)
            return errno;
        r->step = VMZ_MOUNT_STEP_BIND;
        if (mount(source, target, NULL, MS_BIND, NULL) != 0)
            return errno;
        if (m->read_only[i]) {
            r->step = VMZ_MOUNT_STEP_READ_ONLY;
            unsigned long flags = MS_BIND | MS_REMOUNT | MS_RDONLY | kept_flags(target);
            if (mount(NULL, target, NULL, flags, NULL) != 0)
                return errno;
        }
    }
    r->which = -1;
    r->step = VMZ_MOUNT_STEP_ROOT_READ_ONLY;
    if (mount(NULL, m->root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) != 0)
        return errno;
    r->step = VMZ_MOUNT_STEP_NONE;
    return 0;
}

/* Runs in the child: only async-signal-safe calls from here on. */
static void child(struct request *r, pid_t parent, int report_fd) {
    r->exec_fd = -1;
    int err;
    int high[VMZ_SPAWN_MAX_FDS];
    sigset_t all;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127); /* the parent is already gone */
    setpgid(0, 0);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);

    /* Mounts first: the sources are descriptors of the parent's, which
     * the descriptor moves below may replace. */
    if (r->mounts && r->mounts->count > 0) {
        err = make_mounts(r);
        if (err) {
            int report[3] = {err, r->step, r->which};
            (void)!write(report_fd, report, sizeof report);
            _exit(127);
        }
        /* Entering a user namespace changes the credentials: make sure
         * the parent-death signal still holds. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
    }

    /* Move every source above the target range first, so that dup2 into
     * place cannot clobber a source that is itself a low number. */
    for (int i = 0; i < r->nfds; i++) {
        high[i] = -1;
        if (r->fds[i] >= 0) {
            high[i] = fcntl(r->fds[i], F_DUPFD, r->nfds);
            if (high[i] < 0)
                goto fail;
        }
    }
    for (int i = 0; i < r->nfds; i++) {
        if (high[i] >= 0) {
            if (dup2(high[i], i) < 0)
                goto fail;
        } else {
            close(i);
        }
    }
    /* The report pipe must survive until exec (it is close-on-exec). */
    if (report_fd < r->nfds) {
        err = EBADF;
        goto report;
    }
    for (int fd = r->nfds; fd < report_fd; fd++)
        if (fd != r->exec_fd)
            close(fd);
    for (int fd = report_fd + 1; fd <= r->exec_fd; fd++)
        if (fd != r->exec_fd)
            close(fd);
    int first = r->exec_fd > report_fd ? r->exec_fd + 1 : report_fd + 1;
    if (syscall(SYS_close_range, first, ~0U, 0) != 0) {
        for (int fd = first; fd < 65536; fd++)
            close(fd);
    }
    if (r->supervise)
        supervise(r, report_fd);
    exec_program(r);
fail:
    err = errno;
report:
    (void)!write(report_fd, &err, sizeof err);
    _exit(127);
}

int vmz_wait_child(pid_t pid, int *code, int *status) {
    siginfo_t info;
    for (;;) {
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | __WALL) == 0)
            break;
        if (errno != EINTR)
            return errno;
    }
    *code = info.si_code;
    *status = info.si_status;
    return 0;
}

static void spawn_now(struct request *r) {
    int report[2];
    struct sigaction chld;
    if (sigaction(SIGCHLD, NULL, &chld) == 0)
        r->supervise = chld.sa_handler == SIG_IGN || (chld.sa_flags & SA_NOCLDWAIT) != 0;
    pid_t parent = getpid();
    if (pipe2(report, O_CLOEXEC) != 0) {
        r->result = errno;
        return;
    }
    /* The report pipe's write end must not land in the child's target range. */
    if (report[1] < r->nfds) {
        int moved = fcntl(report[1], F_DUPFD_CLOEXEC, r->nfds);
        if (moved < 0) {
            r->result = errno;
            close(report[0]);
            close(report[1]);
            return;
        }
        close(report[1]);
        report[1] = moved;
    }
    /* clone() with exit signal 0 instead of fork(): the child sends no
     * SIGCHLD, so the host's SIGCHLD disposition (SIG_IGN or SA_NOCLDWAIT
     * would reap it behind our back and lose its status) and its own
     * waitpid(-1) loops never touch it; only waitid(__WALL) on its pid
     * (vmz_wait_child) reaps it. CLONE_PIDFD hands back a pidfd
     * (close-on-exec) without a race with the child's exit. */
    int pidfd = -1;
    pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)CLONE_PIDFD, 0UL, &pidfd, 0UL, 0UL);
    if (pid < 0) {
        r->result = errno;
        close(report[0]);
        close(report[1]);
        return;
    }
    if (pid == 0)
        child(r, parent, report[1]);
    close(report[1]);

    /* errno, and for a failed mount its step and source. */
    int child_report[3] = {0, VMZ_MOUNT_STEP_NONE, -1};
    ssize_t n;
    do {
        n = read(report[0], child_report, sizeof child_report);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n > 0) {
        /* exec (or the mounts) failed: reap the child, report its errno. */
        int code, status;
        vmz_wait_child(pid, &code, &status);
        close(pidfd);
        r->result = child_report[0] ? child_report[0] : ECHILD;
        if (n == (ssize_t)sizeof child_report) {
            r->step = child_report[1];
            r->which = child_report[2];
        }
        return;
    }
    r->pid = pid;
    r->pidfd = pidfd;
    r->result = 0;
}

/* The spawner thread: lives as long as the process, so that the children's
 * PR_SET_PDEATHSIG fires only when the process dies. */
static void *spawner(void *unused) {
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the host's signals are not ours */
    pthread_mutex_lock(&lock);
    for (;;) {
        while (pending == NULL)
            pthread_cond_wait(&cond, &lock);
        struct request *r = pending;
        pending = NULL;
        pthread_mutex_unlock(&lock);
        spawn_now(r);
        pthread_mutex_lock(&lock);
        r->done = 1;
        pthread_cond_broadcast(&cond);
    }
    return NULL;
}

/* After fork() the child has no spawner thread (only the forking thread
 * survives): the next vmz_spawn in the child starts its own. */
static pid_t spawner_pid;

static void reset_after_fork(void) {
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&cond, NULL);
    pending = NULL;
    spawner_pid = 0;
}

static void start_spawner(void) {
    pthread_t t;
    static int registered;
    if (!registered) {
        registered = 1;
        pthread_atfork(NULL, NULL, reset_after_fork);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    thread_error = pthread_create(&t, &attr, spawner, NULL);
    pthread_attr_destroy(&attr);
    if (thread_error == 0)
        spawner_pid = getpid();
}

int vmz_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) == 0 ? 0 : errno;
}

int vmz_spawn(const char *path, char *const argv[], const int *fds, int nfds,
              pid_t *pid, int *pidfd) {
    int step, which;
    return vmz_spawn_mounted(path, argv, fds, nfds, NULL, pid, pidfd, &step, &which);
}

int vmz_spawn_mounted(const char *path, char *const argv[], const int *fds, int nfds,
                      const struct vmz_spawn_mounts *mounts, pid_t *pid, int *pidfd,
                      int *step, int *which) {
    if (nfds < 0 || nfds > VMZ_SPAWN_MAX_FDS)
        return EINVAL;
    pthread_mutex_lock(&lock);
    if (spawner_pid != getpid())
        start_spawner();
    pthread_mutex_unlock(&lock);
    if (thread_error)
        return thread_error;
    struct request r = {path, argv, fds, nfds, -1, -1, 0, 0, 0, mounts, VMZ_MOUNT_STEP_NONE, -1, -1};
    pthread_mutex_lock(&lock);
    while (pending != NULL)
        pthread_cond_wait(&cond, &lock);
    pending = &r;
    pthread_cond_broadcast(&cond);
    while (!r.done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    if (r.result == 0) {
        *pid = r.pid;
        *pidfd = r.pidfd;
    }
    *step = r.step;
    *which = r.which;
    return r.result;
}
#endif
