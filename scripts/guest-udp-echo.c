/* UDP echo tool of vmz's test guest (built static by make-guest.sh;
 * busybox's nc has no UDP mode).
 *   udp-echo PORT    bind 0.0.0.0:PORT, print "vmz-guest: udp echo on PORT",
 *                    then, in the background, send every datagram back to
 *                    its sender, prefixed with "echo:", forever
 * Exits 1 with "vmz-guest: udp echo failed: ..." when it cannot bind. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp-echo PORT\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("vmz-guest: udp echo failed: %s\n", strerror(errno));
        return 1;
    }
    /* Bound before the message: a datagram sent after it is received. */
    printf("vmz-guest: udp echo on %d\n", port);
    fflush(stdout);
    if (fork() != 0) return 0;
    static char buf[65536];
    memcpy(buf, "echo:", 5);
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf + 5, sizeof buf - 5, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        sendto(s, buf, (size_t)n + 5, 0, (struct sockaddr *)&from, len);
    }
}
