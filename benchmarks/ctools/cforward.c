/* cforward: the C baseline. What the machine allows for Tureen's job, done the cheapest way
 * we know: recvmmsg 32 packets, then for each packet and each
 * consumer a fresh 12-byte header (consumer's PT, SSRC, seq + offset, ts + offset; marker and
 * first byte kept) and an iovec pointing at the shared payload, sent with sendmmsg 64 at a
 * time from one unconnected socket.
 *
 *   cforward CONFIG
 *   run LISTEN_FD MAX_SECONDS
 *   consumer DST_PORT SSRC PT SEQ_OFFSET TS_OFFSET     (one line per consumer)
 *
 * With SRTP (the C+SRTP baseline), after the run line:
 *   srtp LIBSRTP_SO PROFILE      (srtpdl.h: libsrtp from pylibsrtp's wheel; gcm or cm)
 *   inkey HEX                    (the producer's key: each input is unprotected once, in place)
 * and after each consumer line:
 *   ckey HEX                     (that consumer's key: its own libsrtp session, as Tureen has
 *                                 one per transport)
 * Then per packet and consumer the header + payload are written into the slot's own buffer
 * (protect works in place and appends the tag) and protected, one iovec per datagram.
 *
 * The meeting baseline (several senders, each consumer taking one of their streams):
 *   listen FD                    (another input socket, e.g. one per sending peer)
 *   route IN_SSRC                (after a consumer line: it takes only the input stream with
 *                                 this SSRC; without it, every input packet. Route every
 *                                 consumer of a config, or none)
 * With more than one input socket the loop waits in epoll and drains each ready socket with
 * recvmmsg (MSG_DONTWAIT), as a Tureen worker drains each transport's socket. Consumers are
 * grouped by input SSRC once at start, so a packet only visits its own consumers.
 *
 * LISTEN_FD is inherited, already bound (the parent knows its port). Loopback only. Stops on
 * SIGTERM/SIGINT or after MAX_SECONDS, then prints one JSON line of counters.
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srtpdl.h"

#define RECV_BATCH 32
#define SEND_BATCH 64
#define MAX_PKT 1500
#define MAX_LISTEN 256
#define SOCK_BUF (1 << 20) /* the same kernel buffers as Tureen's sockets (workers/transport/udp.py) */

typedef struct {
    struct sockaddr_in addr;
    uint32_t ssrc, ts_offset;
    uint16_t seq_offset;
    uint8_t pt;
    int routed;       /* takes only input SSRC `in_ssrc` */
    uint32_t in_ssrc;
    sd_srtp_t tx;
} Consumer;

/* Consumers of one input SSRC: cons[start .. start+count) after the sort at start. */
typedef struct {
    uint32_t in_ssrc;
    int start, count;
} Route;

static int cmp_consumer(const void *a, const void *b) {
    const Consumer *x = a, *y = b;
    if (x->routed != y->routed) return x->routed - y->routed;
    return x->in_ssrc < y->in_ssrc ? -1 : x->in_ssrc > y->in_ssrc;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static int send_fd;
static struct mmsghdr smsg[SEND_BATCH];
static struct iovec siov[SEND_BATCH][2];
static uint8_t hdr[SEND_BATCH][12];
static uint8_t sbuf[SEND_BATCH][MAX_PKT + SD_MAX_TRAILER]; /* SRTP: one whole datagram per slot */
static int pending;
static unsigned long long sent, send_errors, srtp_errors;

static void flush(void) {
    int off = 0;
    while (off < pending) {
        int r = sendmmsg(send_fd, smsg + off, pending - off, 0);
        if (r <= 0) { send_errors += pending - off; break; } /* ENOBUFS and friends: lost, counted */
        sent += r;
        off += r;
    }
    pending = 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: cforward CONFIG\n"); return 2; }
    FILE *cf = fopen(argv[1], "r");
    if (!cf) { perror("config"); return 2; }
    int listen_fd = -1;
    unsigned max_seconds = 0;
    int n = 0, cap = 16;
    Consumer *cons = calloc(cap, sizeof(Consumer));
    char word[32];
    int srtp_on = 0;
    sd_srtp_t rx = NULL;
    int listens[MAX_LISTEN], nlisten = 0;
    while (fscanf(cf, "%31s", word) == 1) {
        if (!strcmp(word, "run")) {
            if (fscanf(cf, "%d %u", &listen_fd, &max_seconds) != 2) goto bad;
        } else if (!strcmp(word, "consumer")) {
            if (n == cap) cons = realloc(cons, (cap *= 2) * sizeof(Consumer));
            unsigned port, ssrc, pt, seq_off, ts_off;
            if (fscanf(cf, "%u %u %u %u %u", &port, &ssrc, &pt, &seq_off, &ts_off) != 5) goto bad;
            Consumer *c = &cons[n++];
            memset(c, 0, sizeof *c);
            c->addr.sin_family = AF_INET;
            c->addr.sin_port = htons((uint16_t)port);
            c->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            c->ssrc = ssrc;
            c->pt = (uint8_t)pt;
            c->seq_offset = (uint16_t)seq_off;
            c->ts_offset = ts_off;
        } else if (!strcmp(word, "listen")) {
            if (nlisten == MAX_LISTEN || fscanf(cf, "%d", &listens[nlisten]) != 1) goto bad;
            nlisten++;
        } else if (!strcmp(word, "route")) {
            unsigned in_ssrc;
            if (!n || fscanf(cf, "%u", &in_ssrc) != 1) goto bad;
            cons[n - 1].routed = 1;
            cons[n - 1].in_ssrc = in_ssrc;
        } else if (!strcmp(word, "srtp")) {
            char lib[4096], profile[16];
            if (fscanf(cf, "%4095s %15s", lib, profile) != 2) goto bad;
            sd_load(lib, profile);
            srtp_on = 1;
        } else if (!strcmp(word, "inkey")) {
            char hex[129];
            if (!srtp_on || fscanf(cf, "%128s", hex) != 1) goto bad;
            rx = sd_session(hex, SD_SSRC_ANY_INBOUND, 0);
        } else if (!strcmp(word, "ckey")) {
            char hex[129];
            if (!srtp_on || !n || fscanf(cf, "%128s", hex) != 1) goto bad;
            cons[n - 1].tx = sd_session(hex, SD_SSRC_ANY_OUTBOUND, 0);
        } else goto bad;
    }
    fclose(cf);
    if (listen_fd < 0 || max_seconds == 0) goto bad;
    if (srtp_on) {
        if (!rx) goto bad;
        for (int c = 0; c < n; c++) if (!cons[c].tx) goto bad;
    }

    /* Routed consumers grouped by input SSRC (unrouted ones, first after the sort, take
     * every packet). The SRTP baseline keeps one unrouted group: unchanged. */
    qsort(cons, n, sizeof(Consumer), cmp_consumer);
    int nall = 0;
    while (nall < n && !cons[nall].routed) nall++;
    Route *routes = calloc(n + 1, sizeof(Route));
    int nroutes = 0;
    for (int c = nall; c < n; c++) {
        if (!nroutes || routes[nroutes - 1].in_ssrc != cons[c].in_ssrc)
            routes[nroutes++] = (Route){.in_ssrc = cons[c].in_ssrc, .start = c, .count = 0};
        routes[nroutes - 1].count++;
    }

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    send_fd = socket(AF_INET, SOCK_DGRAM, 0);
    int size = SOCK_BUF;
    setsockopt(send_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    listens[nlisten++] = listen_fd; /* the run line's socket, last */
    int ep = nlisten > 1 ? epoll_create1(0) : -1;
    for (int i = 0; i < nlisten; i++) {
        setsockopt(listens[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        /* A receive timeout so the deadline and signals are seen even when no packet comes. */
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        setsockopt(listens[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (ep >= 0) {
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = listens[i]};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, listens[i], &ev) < 0) { perror("epoll_ctl"); return 2; }
        }
    }
    struct epoll_event events[MAX_LISTEN];
    int ready = 0, next = 0; /* epoll: events[next .. ready) still to drain */

    static uint8_t in[RECV_BATCH][MAX_PKT];
    struct mmsghdr rmsg[RECV_BATCH];
    struct iovec riov[RECV_BATCH];
    for (int i = 0; i < RECV_BATCH; i++) {
        riov[i].iov_base = in[i];
        riov[i].iov_len = MAX_PKT;
        memset(&rmsg[i], 0, sizeof rmsg[i]);
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    for (int i = 0; i < SEND_BATCH; i++) {
        smsg[i].msg_hdr.msg_iov = siov[i];
        smsg[i].msg_hdr.msg_iovlen = 2;
        smsg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
        siov[i][0].iov_base = srtp_on ? sbuf[i] : hdr[i];
        siov[i][0].iov_len = 12;
        if (srtp_on) smsg[i].msg_hdr.msg_iovlen = 1;
    }

    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    time_t deadline = t.tv_sec + (time_t)max_seconds;
    unsigned long long received = 0, dropped = 0;
    while (!stop) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec >= deadline) break;
        int fd = listen_fd, got;
        if (ep < 0) {
            got = recvmmsg(listen_fd, rmsg, RECV_BATCH, MSG_WAITFORONE, NULL);
        } else { /* several inputs: one ready socket's drain per round, as a worker does */
            if (next >= ready) {
                ready = epoll_wait(ep, events, MAX_LISTEN, 100);
                next = 0;
                if (ready <= 0) { ready = 0; continue; }
            }
            fd = events[next].data.fd;
            got = recvmmsg(fd, rmsg, RECV_BATCH, MSG_DONTWAIT, NULL);
            if (got < RECV_BATCH) next++; /* drained; else come back to it */
        }
        if (got <= 0) continue;
        for (int i = 0; i < got; i++) {
            uint8_t *p = in[i];
            unsigned len = rmsg[i].msg_len;
            if (len < 12 || (p[0] & 0xc0) != 0x80) { dropped++; continue; }
            if (srtp_on) {
                int l = (int)len;
                if (sd_unprotect(rx, p, &l)) { srtp_errors++; continue; }
                len = (unsigned)l;
            }
            received++;
            uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
            uint32_t ts = (uint32_t)p[4] << 24 | p[5] << 16 | p[6] << 8 | p[7];
            /* Unrouted consumers take every packet; else only this SSRC's route (a config
             * routes all of its consumers or none). */
            int first = 0, last = nall;
            if (!nall) {
                uint32_t in_ssrc = (uint32_t)p[8] << 24 | p[9] << 16 | p[10] << 8 | p[11];
                for (int r = 0; r < nroutes; r++) {
                    if (routes[r].in_ssrc == in_ssrc) {
                        first = routes[r].start;
                        last = first + routes[r].count;
                        break;
                    }
                }
            }
            for (int c = first; c < last; c++) {
                Consumer *k = &cons[c];
                uint8_t *h = srtp_on ? sbuf[pending] : hdr[pending];
                uint16_t s = seq + k->seq_offset;
                uint32_t v = ts + k->ts_offset;
                h[0] = p[0];
                h[1] = (p[1] & 0x80) | k->pt;
                h[2] = s >> 8; h[3] = (uint8_t)s;
                h[4] = v >> 24; h[5] = v >> 16; h[6] = v >> 8; h[7] = (uint8_t)v;
                h[8] = k->ssrc >> 24; h[9] = k->ssrc >> 16; h[10] = k->ssrc >> 8; h[11] = (uint8_t)k->ssrc;
                if (srtp_on) {
                    memcpy(h + 12, p + 12, len - 12);
                    int l = (int)len;
                    if (sd_protect(k->tx, h, &l)) { srtp_errors++; continue; }
                    siov[pending][0].iov_len = (size_t)l;
                } else {
                    siov[pending][1].iov_base = p + 12;
                    siov[pending][1].iov_len = len - 12;
                }
                smsg[pending].msg_hdr.msg_name = &k->addr;
                if (++pending == SEND_BATCH) flush();
            }
        }
        flush(); /* the payloads live in `in`, which the next recvmmsg overwrites */
    }
    printf("{\"received\": %llu, \"sent\": %llu, \"send_errors\": %llu, \"dropped\": %llu, "
           "\"srtp\": %d, \"srtp_errors\": %llu}\n",
           received, sent, send_errors, dropped, srtp_on, srtp_errors);
    return 0;
bad:
    fprintf(stderr, "cforward: bad config\n");
    return 2;
}
