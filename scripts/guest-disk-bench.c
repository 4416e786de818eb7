/* Disk and share benchmark tool of vmz's test guest (built static by
 * make-guest.sh; busybox has no IOPS tool). Disks are opened with O_DIRECT
 * (the guest's page cache stays out of the figures). Times are the guest's
 * CLOCK_MONOTONIC, in microseconds. One line per result, for the host:
 *   "vmz-bench: KIND key=value ..."
 *
 *   disk-bench seq DEV MIB
 *       write MIB MiB from the start of /dev/DEV in 1 MiB blocks, then
 *       fdatasync; then read them back in 1 MiB blocks:
 *       "vmz-bench: seq-write dev=DEV bytes=N us=T" and "... seq-read ..."
 *       (the write's time includes its fdatasync)
 *   disk-bench rand DEV read|write SPAN_MIB OPS SECONDS
 *       4 KiB reads (or writes, no sync) at random 4 KiB-aligned offsets in
 *       the first SPAN_MIB MiB, until OPS are done or SECONDS have passed:
 *       "vmz-bench: rand-read dev=DEV ops=N us=T"; writes end with an
 *       untimed fdatasync, so that the next measurement starts clean
 *   disk-bench fsync DEV OPS SECONDS
 *       4 KiB write + fdatasync, repeated (offsets cycling through the first
 *       MiB), until OPS are done or SECONDS have passed:
 *       "vmz-bench: fsync dev=DEV ops=N us=T"; that MiB is written and
 *       flushed once before (untimed), so that every timed write overwrites
 *       (a first write to a sparse image also allocates on the host)
 *   disk-bench time NAME COMMAND [ARG...]
 *       run COMMAND, and time it: "vmz-bench: NAME rc=R us=T"
 *   disk-bench readtree NAME DIR
 *       read every regular file under DIR to its end:
 *       "vmz-bench: NAME files=N bytes=B us=T"
 * Errors: "vmz-bench: error <what>: <why>" on stdout, exit status 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define BLOCK 4096L

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int fail(const char *what) {
    printf("vmz-bench: error %s: %s\n", what, strerror(errno));
    return 1;
}

static int open_dev(const char *dev, char *path, size_t size) {
    snprintf(path, size, "/dev/%s", dev);
    return open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
}

/* An aligned buffer of `size` bytes filled with a non-zero pattern. */
static char *buffer(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, BLOCK, size) != 0) return NULL;
    for (size_t i = 0; i < size; i++) ((char *)p)[i] = (char)(i * 131 + 7);
    return p;
}

/* All of n bytes at `at`: written from p (write) or read into it. */
static int full_io(int fd, int write, char *p, size_t n, off_t at) {
    while (n > 0) {
        ssize_t r = write ? pwrite(fd, p, n, at) : pread(fd, p, n, at);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
        at += r;
    }
    return 0;
}

static int seq(const char *dev, long mib) {
    char path[64];
    int fd = open_dev(dev, path, sizeof path);
    char *buf = buffer(MIB);
    if (fd < 0 || !buf) return fail(path);
    long long t = now_us();
    for (long i = 0; i < mib; i++)
        if (full_io(fd, 1, buf, MIB, (off_t)i * MIB) != 0) return fail("seq write");
    if (fdatasync(fd) != 0) return fail("seq fdatasync");
    printf("vmz-bench: seq-write dev=%s bytes=%ld us=%lld\n", dev, mib * MIB, now_us() - t);
    fflush(stdout);
    t = now_us();
    for (long i = 0; i < mib; i++)
        if (full_io(fd, 0, buf, MIB, (off_t)i * MIB) != 0) return fail("seq read");
    printf("vmz-bench: seq-read dev=%s bytes=%ld us=%lld\n", dev, mib * MIB, now_us() - t);
    close(fd);
    return 0;
}

/* xorshift64: the same offsets in every run. */
static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int rand_io(const char *dev, int write, long span_mib, long ops, long seconds) {
    char path[64];
    int fd = open_dev(dev, path, sizeof path);
    char *buf = buffer(BLOCK);
    if (fd < 0 || !buf) return fail(path);
    uint64_t state = 0x9e3779b97f4a7c15ULL;
    uint64_t blocks = (uint64_t)span_mib * MIB / BLOCK;
    if (blocks == 0) blocks = 1;
    long long t = now_us(), end = t + seconds * 1000000LL;
    long done = 0;
    while (done < ops && (done % 64 != 0 || now_us() < end)) {
        off_t at = (off_t)(next_random(&state) % blocks) * BLOCK;
        int rc = full_io(fd, write, buf, BLOCK, at);
        if (rc != 0) return fail(write ? "rand write" : "rand read");
        done++;
    }
    printf("vmz-bench: rand-%s dev=%s ops=%ld us=%lld\n", write ? "write" : "read", dev, done,
           now_us() - t);
    if (write && fdatasync(fd) != 0) return fail("rand fdatasync");
    close(fd);
    return 0;
}

static int fsync_loop(const char *dev, long ops, long seconds) {
    char path[64];
    int fd = open_dev(dev, path, sizeof path);
    char *buf = buffer(MIB);
    if (fd < 0 || !buf) return fail(path);
    if (full_io(fd, 1, buf, MIB, 0) != 0 || fdatasync(fd) != 0) return fail("fsync warm-up");
    long long t = now_us(), end = t + seconds * 1000000LL;
    long done = 0;
    while (done < ops && now_us() < end) {
        off_t at = (off_t)(done % (MIB / BLOCK)) * BLOCK;
        if (full_io(fd, 1, buf, BLOCK, at) != 0) return fail("fsync write");
        if (fdatasync(fd) != 0) return fail("fdatasync");
        done++;
    }
    printf("vmz-bench: fsync dev=%s ops=%ld us=%lld\n", dev, done, now_us() - t);
    close(fd);
    return 0;
}

static int time_command(const char *name, char **argv) {
    long long t = now_us();
    pid_t pid = fork();
    if (pid < 0) return fail("fork");
    if (pid == 0) {
        execvp(argv[0], argv);
        printf("vmz-bench: error exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return fail("waitpid");
    long long us = now_us() - t;
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("vmz-bench: %s rc=%d us=%lld\n", name, rc, us);
    return rc == 0 ? 0 : 1;
}

static long tree_files;
static long long tree_bytes;
static char *tree_buf;

static int read_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (type != FTW_F) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(path);
    ssize_t n;
    while ((n = read(fd, tree_buf, MIB)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return fail(path);
        }
        tree_bytes += n;
    }
    close(fd);
    tree_files++;
    return 0;
}

static int read_tree(const char *name, const char *dir) {
    tree_buf = malloc(MIB);
    if (!tree_buf) return fail("malloc");
    long long t = now_us();
    if (nftw(dir, read_one, 32, FTW_PHYS) != 0) return 1;
    printf("vmz-bench: %s files=%ld bytes=%lld us=%lld\n", name, tree_files, tree_bytes,
           now_us() - t);
    return 0;
}

static int usage(void) {
    printf("vmz-bench: error usage: disk-bench seq DEV MIB | rand DEV read|write SPAN_MIB OPS SECONDS"
           " | fsync DEV OPS SECONDS | time NAME COMMAND... | readtree NAME DIR\n");
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "seq") == 0) return seq(argv[2], atol(argv[3]));
    if (argc == 7 && strcmp(argv[1], "rand") == 0 &&
        (strcmp(argv[3], "read") == 0 || strcmp(argv[3], "write") == 0))
        return rand_io(argv[2], strcmp(argv[3], "write") == 0, atol(argv[4]), atol(argv[5]),
                       atol(argv[6]));
    if (argc == 5 && strcmp(argv[1], "fsync") == 0)
        return fsync_loop(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "time") == 0) return time_command(argv[2], argv + 3);
    if (argc == 4 && strcmp(argv[1], "readtree") == 0) return read_tree(argv[2], argv[3]);
    return usage();
}
