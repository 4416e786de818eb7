/* vsock tool of vmz's test guest (built static by make-guest.sh; busybox
 * has no AF_VSOCK).
 *   vsock listen PORT echo        echo every connection's bytes back
 *   vsock listen PORT sink [N]    read to end-of-file (or N bytes), answer
 *                                 "got N\n"
 *   vsock listen PORT source N    send N bytes of 'x', then close
 *     (in the background: prints "vmz-guest: vsock listening on PORT",
 *     then serves each connection in a child process, forever)
 *   vsock connect PORT TEXT       connect to the host (context id 2),
 *     send TEXT and a newline, shut down writing, print what comes back
 *     as "vmz-guest: vsock reply [...]", or why it failed */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h> /* before linux/vm_sockets.h, which needs struct sockaddr */
#include <linux/vm_sockets.h>
#include <unistd.h>

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void serve(int c, const char *mode, long long count) {
    static char buf[65536];
    if (strcmp(mode, "echo") == 0) {
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write_all(c, buf, (size_t)n) < 0) break;
    } else if (strcmp(mode, "sink") == 0) {
        long long total = 0;
        ssize_t n;
        while ((count == 0 || total < count) && (n = read(c, buf, sizeof buf)) > 0) total += n;
        char msg[64];
        int len = snprintf(msg, sizeof msg, "got %lld\n", total);
        write_all(c, msg, (size_t)len);
    } else if (strcmp(mode, "source") == 0) {
        memset(buf, 'x', sizeof buf);
        while (count > 0) {
            size_t n = count < (long long)sizeof buf ? (size_t)count : sizeof buf;
            if (write_all(c, buf, n) < 0) break;
            count -= (long long)n;
        }
    }
    close(c);
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "listen") == 0) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = (unsigned)atoi(argv[2]),
                                .svm_cid = VMADDR_CID_ANY};
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0) {
            printf("vmz-guest: vsock listen failed: %s\n", strerror(errno));
            return 1;
        }
        long long count = argc >= 5 ? atoll(argv[4]) : 0;
        signal(SIGCHLD, SIG_IGN);
        printf("vmz-guest: vsock listening on %s\n", argv[2]);
        fflush(stdout);
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            if (fork() == 0) {
                close(s);
                serve(c, argv[3], count);
                _exit(0);
            }
            close(c);
        }
    }
    if (argc >= 4 && strcmp(argv[1], "connect") == 0) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_port = (unsigned)atoi(argv[2]),
                                .svm_cid = VMADDR_CID_HOST};
        if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
            printf("vmz-guest: vsock connect failed: %s\n", strerror(errno));
            return 1;
        }
        write_all(s, argv[3], strlen(argv[3]));
        write_all(s, "\n", 1);
        shutdown(s, SHUT_WR);
        char buf[4096];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 && (n = read(s, buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)n;
        buf[got] = 0;
        while (got > 0 && buf[got - 1] == '\n') buf[--got] = 0;
        printf("vmz-guest: vsock reply [%s]\n", buf);
        return 0;
    }
    fprintf(stderr, "usage: vsock listen PORT echo|sink|source N | vsock connect PORT TEXT\n");
    return 2;
}
