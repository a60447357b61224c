/* rtpload: the benchmark's paced RTP source and checking sink, in one single-threaded loop.
 *
 * Why one process and one thread: the machine has two cores, the forwarder under test owns
 * one, and everything else must share the other. A paced sender that sleeps and a sink that
 * blocks would make the forwarder pay a cross-core wake-up per packet; here the loop never
 * sleeps during the run: it sends what is due (sendmmsg) and polls its sink sockets with
 * epoll_wait(timeout 0) + recvmmsg, so nobody is ever woken.
 *
 * Input: a config file (argv[1]); the sockets themselves are inherited from the parent
 * (already bound, their fds named in the config), so the parent knows every port before it
 * tells the server where to send.
 *
 *   run NONCE WARMUP_MS MEASURE_MS DRAIN_MS MAX_PACKETS
 *   dest IPV4                        (optional, before the streams: where they go; 127.0.0.1
 *                                     by default; only loopback or TEST-NET-2 198.51.100.0/24,
 *                                     the benchmark's network namespaces, are accepted)
 *   stream SRC_FD DST_PORT SSRC PT SIZE PPS SEQ0 TS0 TS_STEP      (one line per stream)
 *   expect SINK_FD SSRC PT STREAM_INDEX                          (one line per consumer)
 *
 * SRTP (optional; then every stream and every expect carries a key):
 *   srtp LIBSRTP_SO PROFILE          (first line after run; PROFILE gcm or cm, srtpdl.h)
 *   skey HEX ROC                     (after a stream line: master key||salt, its first ROC)
 *   ekey HEX BASE                    (after an expect line: the consumer's key, and the SRTP
 *                                     index its first packet should have, -1 if unknown)
 * The sender protects every packet in place after stamping it; the sink reads the SSRC from
 * the clear header, unprotects with that consumer's key (failures counted as srtp_errors)
 * and checks the plaintext as for plain RTP. STUN answers and SRTCP at a sink are skipped
 * (counted as control_skipped). The report then has srtp_last: per expect in config order,
 * [index, counter] of the newest packet, so the harness can give the next run its BASE
 * (each run starts fresh libsrtp sessions; the SRTP index must carry over the ROC).
 *
 * Every payload starts with three bytes that make it the first packet of a VP8 key frame
 * (an extended descriptor as browsers send, X=1 S=1 PID 0, then I=L=T=K=0; payload header
 * P=0: Tureen starts a video consumer only at a key frame, and here every packet is one;
 * mediasoup v2's VP8 parser, the mediasoup-v2 rows, sees no key frame without X), then: u64 send time (CLOCK_MONOTONIC ns), u32 nonce,
 * u32 stream index, u32 per-stream counter. A packet's latency ends at the kernel's receive
 * timestamp of its sink socket (SO_TIMESTAMPNS, taken when the forwarder's send delivers it
 * over loopback), not when this loop reads it: on a shared core the loop can be off its CPU
 * for a scheduler slice (1-3 ms), which would otherwise be charged to the forwarder. The sink checks each packet against its expect
 * line: the socket it came to, SSRC, PT, that sequence number and timestamp advance in step
 * with the counter (continuity across any loss), and counts loss per consumer.
 *
 * Output on stdout: "MEASURE" when the measurement window opens, "END" when it closes (the
 * parent samples the forwarder's CPU at both), then one JSON object after the drain.
 * Bounded: the run ends after WARMUP+MEASURE ms or MAX_PACKETS sent, plus DRAIN ms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srtpdl.h"

#define BATCH 64
#define MAX_PKT 1500
#define HIST_US 100000 /* latency histogram: 1 us buckets up to 100 ms, then one overflow */
#define HDR 12
#define KEY 3    /* the VP8 key-frame bytes before our own payload header */
#define STAMP 20 /* bytes of our own payload header */
#define PAY (HDR + KEY) /* where it starts */

typedef struct {
    int fd;
    struct sockaddr_in dst;
    uint32_t ssrc, pps, size, ts0, ts_step;
    uint8_t pt;
    uint16_t seq0;
    uint64_t sent, sent_window; /* packets sent in all, and stamped inside the window */
    sd_srtp_t tx;
} Stream;

typedef struct {
    int fd;
    uint32_t ssrc;
    uint8_t pt;
    uint32_t stream;
    int seen;
    uint32_t last_counter;
    uint16_t last_seq;
    uint32_t last_ts;
    uint64_t recv, recv_window, seq_errors, ts_errors, pt_errors, dup_or_reorder;
    sd_srtp_t rx;
    long long base; /* SRTP index expected of the first packet, -1 unknown */
    int roc_set, order;
    uint64_t srtp_errors;
} Expect;

static Stream *streams;
static int nstreams;
static Expect *expects;
static int nexpects;
static uint64_t hist[HIST_US + 1];
static uint64_t hist_n;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* CLOCK_REALTIME - CLOCK_MONOTONIC, ns: turns a kernel receive timestamp (realtime) into the
 * send stamps' clock. Read once per run (a run lasts seconds: NTP slewing is negligible). */
static int64_t realtime_offset(void) {
    struct timespec m, r;
    clock_gettime(CLOCK_MONOTONIC, &m);
    clock_gettime(CLOCK_REALTIME, &r);
    return ((int64_t)r.tv_sec - (int64_t)m.tv_sec) * 1000000000ll + ((int64_t)r.tv_nsec - (int64_t)m.tv_nsec);
}

/* The kernel's receive time of one datagram (SCM_TIMESTAMPNS), on the monotonic clock; or
 * `fallback` (when this loop read it) if the kernel gave none. */
static uint64_t rx_time(struct msghdr *h, int64_t offset, uint64_t fallback) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            int64_t rt = (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
            return rt > offset ? (uint64_t)(rt - offset) : fallback;
        }
    }
    return fallback;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static int cmp_expect(const void *a, const void *b) {
    const Expect *x = a, *y = b;
    if (x->fd != y->fd) return x->fd < y->fd ? -1 : 1;
    return x->ssrc < y->ssrc ? -1 : x->ssrc > y->ssrc;
}

static Expect *find_expect(int fd, uint32_t ssrc) {
    Expect key = {.fd = fd, .ssrc = ssrc};
    return bsearch(&key, expects, nexpects, sizeof(Expect), cmp_expect);
}

/* Unknown SSRC at a socket, foreign nonce (a previous run's tail), or malformed. */
static uint64_t unexpected, stale, misrouted, runts, control_skipped, srtp_errors;
static int srtp_on;

/* The ROC that puts `seq` nearest to the expected index `base` (RFC 3711 3.3.1's guess). */
static uint32_t roc_near(long long base, uint16_t seq) {
    uint32_t roc = (uint32_t)(base >> 16);
    uint16_t s = (uint16_t)base;
    if (seq >= s) { if (seq - s > 32768 && roc > 0) roc--; }
    else if (s - seq > 32768) roc++;
    return roc;
}

static void check(int fd, uint8_t *p, ssize_t n, uint64_t now, uint32_t nonce,
                  uint64_t win_start, uint64_t win_end) {
    Expect *e = NULL;
    if (srtp_on) {
        /* RFC 7983 demux: STUN answers (keepalives) and SRTCP are not media. */
        if (n < HDR || (p[0] & 0xc0) != 0x80 || (p[1] >= 192 && p[1] <= 223)) { control_skipped++; return; }
        e = find_expect(fd, get32(p + 8));
        if (!e) { unexpected++; return; }
        if (!e->roc_set) {
            e->roc_set = 1;
            if (e->base >= 0) sd_set_stream_roc(e->rx, e->ssrc, roc_near(e->base, (uint16_t)(p[2] << 8 | p[3])));
        }
        int len = (int)n;
        if (sd_unprotect(e->rx, p, &len)) { e->srtp_errors++; srtp_errors++; return; }
        n = len;
    }
    if (n < PAY + STAMP) { runts++; return; }
    uint64_t sent_at;
    memcpy(&sent_at, p + PAY, 8);
    if (get32(p + PAY + 8) != nonce) { stale++; return; }
    uint32_t stream = get32(p + PAY + 12), counter = get32(p + PAY + 16);
    if (!e) e = find_expect(fd, get32(p + 8));
    if (!e) { unexpected++; return; }
    if (e->stream != stream) { misrouted++; return; }
    uint16_t seq = (uint16_t)(p[2] << 8 | p[3]);
    uint32_t ts = get32(p + 4);
    if ((p[1] & 0x7f) != e->pt) e->pt_errors++;
    if (e->seen) {
        uint32_t gap = counter - e->last_counter;
        if (counter <= e->last_counter) e->dup_or_reorder++;
        else {
            if ((uint16_t)(e->last_seq + gap) != seq) e->seq_errors++;
            if (e->last_ts + gap * streams[stream].ts_step != ts) e->ts_errors++;
        }
    }
    if (!e->seen || counter > e->last_counter) {
        e->seen = 1;
        e->last_counter = counter;
        e->last_seq = seq;
        e->last_ts = ts;
    }
    e->recv++;
    if (sent_at >= win_start && sent_at < win_end) {
        e->recv_window++;
        uint64_t us = now > sent_at ? (now - sent_at) / 1000 : 0;
        hist[us < HIST_US ? us : HIST_US]++;
        hist_n++;
    }
}

static double percentile(double q) {
    if (!hist_n) return -1;
    uint64_t rank = (uint64_t)(q * (double)(hist_n - 1)), seen = 0;
    for (int i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > rank) return (double)i;
    }
    return HIST_US;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: rtpload CONFIG\n"); return 2; }
    FILE *cf = fopen(argv[1], "r");
    if (!cf) { perror("config"); return 2; }
    uint32_t nonce = 0;
    unsigned warmup_ms = 0, measure_ms = 0, drain_ms = 0;
    unsigned long long max_packets = 0;
    int cap_s = 16, cap_e = 16;
    streams = calloc(cap_s, sizeof(Stream));
    expects = calloc(cap_e, sizeof(Expect));
    char word[32];
    struct in_addr dest = {htonl(INADDR_LOOPBACK)};
    while (fscanf(cf, "%31s", word) == 1) {
        if (!strcmp(word, "run")) {
            if (fscanf(cf, "%u %u %u %u %llu", &nonce, &warmup_ms, &measure_ms, &drain_ms, &max_packets) != 5) goto bad;
        } else if (!strcmp(word, "dest")) {
            char text[32];
            if (fscanf(cf, "%31s", text) != 1 || inet_pton(AF_INET, text, &dest) != 1) goto bad;
            uint32_t a = ntohl(dest.s_addr);
            /* Never a real network: loopback, or the namespaces' documentation range. */
            if ((a >> 24) != 127 && (a >> 8) != 0xC63364) goto bad;
        } else if (!strcmp(word, "stream")) {
            if (nstreams == cap_s) streams = realloc(streams, (cap_s *= 2) * sizeof(Stream));
            Stream *s = &streams[nstreams];
            memset(s, 0, sizeof *s);
            unsigned port, pt, seq0;
            if (fscanf(cf, "%d %u %u %u %u %u %u %u %u", &s->fd, &port, &s->ssrc, &pt, &s->size, &s->pps,
                       &seq0, &s->ts0, &s->ts_step) != 9) goto bad;
            if (s->size < PAY + STAMP || s->size > MAX_PKT || s->pps == 0) goto bad;
            s->pt = (uint8_t)pt;
            s->seq0 = (uint16_t)seq0;
            s->dst.sin_family = AF_INET;
            s->dst.sin_port = htons((uint16_t)port);
            s->dst.sin_addr = dest; /* loopback or TEST-NET-2 only (checked at `dest`), by design */
            if (srtp_on && s->size > MAX_PKT - SD_MAX_TRAILER) goto bad;
            nstreams++;
        } else if (!strcmp(word, "expect")) {
            if (nexpects == cap_e) expects = realloc(expects, (cap_e *= 2) * sizeof(Expect));
            Expect *e = &expects[nexpects];
            memset(e, 0, sizeof *e);
            unsigned pt;
            if (fscanf(cf, "%d %u %u %u", &e->fd, &e->ssrc, &pt, &e->stream) != 4) goto bad;
            if ((int)e->stream >= nstreams) goto bad;
            e->pt = (uint8_t)pt;
            e->base = -1;
            e->order = nexpects;
            nexpects++;
        } else if (!strcmp(word, "srtp")) {
            char lib[4096], profile[16];
            if (fscanf(cf, "%4095s %15s", lib, profile) != 2) goto bad;
            sd_load(lib, profile);
            srtp_on = 1;
        } else if (!strcmp(word, "skey")) {
            char hex[129];
            unsigned roc;
            if (!srtp_on || !nstreams || fscanf(cf, "%128s %u", hex, &roc) != 2) goto bad;
            Stream *s = &streams[nstreams - 1];
            s->tx = sd_session(hex, SD_SSRC_SPECIFIC, s->ssrc);
            if (roc) sd_set_stream_roc(s->tx, s->ssrc, roc);
        } else if (!strcmp(word, "ekey")) {
            char hex[129];
            long long base;
            if (!srtp_on || !nexpects || fscanf(cf, "%128s %lld", hex, &base) != 2) goto bad;
            Expect *e = &expects[nexpects - 1];
            e->rx = sd_session(hex, SD_SSRC_SPECIFIC, e->ssrc);
            e->base = base;
        } else goto bad;
    }
    fclose(cf);
    if (srtp_on) {
        for (int i = 0; i < nstreams; i++) if (!streams[i].tx) { word[0] = 0; goto bad; }
        for (int i = 0; i < nexpects; i++) if (!expects[i].rx) { word[0] = 0; goto bad; }
    }
    qsort(expects, nexpects, sizeof(Expect), cmp_expect);

    int ep = epoll_create1(0);
    int nsinks = 0;
    for (int i = 0; i < nexpects; i++) {
        if (i && expects[i].fd == expects[i - 1].fd) continue;
        int on = 1; /* the kernel's receive timestamps: see the header comment */
        if (setsockopt(expects[i].fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) { perror("SO_TIMESTAMPNS"); return 2; }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = expects[i].fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, expects[i].fd, &ev) < 0) { perror("epoll_ctl"); return 2; }
        nsinks++;
    }

    /* Send side: one prebuilt packet per batch slot, stamped just before each send. */
    static uint8_t out[BATCH][MAX_PKT + SD_MAX_TRAILER];
    struct mmsghdr smsg[BATCH];
    struct iovec siov[BATCH];
    /* Receive side. */
    static uint8_t in[BATCH][MAX_PKT];
    static uint8_t ctrl[BATCH][CMSG_SPACE(sizeof(struct timespec)) + 64];
    struct mmsghdr rmsg[BATCH];
    struct iovec riov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        riov[i].iov_base = in[i];
        riov[i].iov_len = MAX_PKT;
        memset(&rmsg[i], 0, sizeof rmsg[i]);
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
    }
    struct epoll_event events[1024];

    /* Discard what an earlier run left in the sinks (bounded): with SRTP every stale packet
     * would cost an unprotect before its nonce could tell it is stale. */
    uint64_t discarded = 0;
    for (int i = 0; i < nexpects; i++) {
        if (i && expects[i].fd == expects[i - 1].fd) continue;
        for (int rounds = 0; rounds < 1000; rounds++) {
            int got = recvmmsg(expects[i].fd, rmsg, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) break;
            discarded += (uint64_t)got;
        }
    }

    int64_t rt_offset = realtime_offset();
    uint64_t t0 = now_ns();
    uint64_t win_start = t0 + (uint64_t)warmup_ms * 1000000ull;
    uint64_t win_end = win_start + (uint64_t)measure_ms * 1000000ull;
    uint64_t stop_send = win_end, stop_all = 0;
    uint64_t total_sent = 0, send_errors = 0, recv_in_window_by_arrival = 0, late_max = 0;
    int phase = 0; /* 0 warm-up, 1 window, 2 drain */
    for (;;) {
        uint64_t now = now_ns();
        if (phase == 0 && now >= win_start) {
            phase = 1;
            printf("MEASURE\n");
            fflush(stdout);
        }
        if (phase == 1 && (now >= stop_send || total_sent >= max_packets)) {
            phase = 2;
            stop_send = now;
            stop_all = now + (uint64_t)drain_ms * 1000000ull;
            if (now < win_end) win_end = now; /* stopped by count: the window ends here */
            printf("END\n");
            fflush(stdout);
        }
        if (phase == 2 && now >= stop_all) break;

        if (phase < 2) {
            for (int si = 0; si < nstreams; si++) {
                Stream *s = &streams[si];
                uint64_t due = (now - t0) * s->pps / 1000000000ull;
                if (due <= s->sent) continue;
                uint64_t lag = due - s->sent;
                if (lag > late_max) late_max = lag;
                int k = lag > BATCH ? BATCH : (int)lag;
                for (int j = 0; j < k; j++) {
                    uint8_t *p = out[j];
                    uint64_t c = s->sent + j;
                    p[0] = 0x80;
                    p[1] = s->pt;
                    p[2] = (uint8_t)((s->seq0 + c) >> 8);
                    p[3] = (uint8_t)(s->seq0 + c);
                    put32(p + 4, s->ts0 + (uint32_t)c * s->ts_step);
                    put32(p + 8, s->ssrc);
                    p[HDR] = 0x90;     /* VP8 descriptor: X=1, S=1, PID 0 */
                    p[HDR + 1] = 0x00; /* its extension byte: no I, L, T, K fields */
                    p[HDR + 2] = 0x00; /* VP8 payload header: P=0, a key frame */
                    memcpy(p + PAY, &now, 8);
                    put32(p + PAY + 8, nonce);
                    put32(p + PAY + 12, (uint32_t)si);
                    put32(p + PAY + 16, (uint32_t)c);
                    siov[j].iov_base = p;
                    siov[j].iov_len = s->size;
                    if (s->tx) {
                        int len = (int)s->size;
                        if (sd_protect(s->tx, p, &len)) send_errors++;
                        siov[j].iov_len = (size_t)len;
                    }
                    memset(&smsg[j], 0, sizeof smsg[j]);
                    smsg[j].msg_hdr.msg_name = &s->dst;
                    smsg[j].msg_hdr.msg_namelen = sizeof s->dst;
                    smsg[j].msg_hdr.msg_iov = &siov[j];
                    smsg[j].msg_hdr.msg_iovlen = 1;
                }
                int r = sendmmsg(s->fd, smsg, k, MSG_DONTWAIT);
                if (r < 0) { send_errors += k; r = k; } /* counted as sent-and-lost: pacing goes on */
                else if (r < k) { send_errors += k - r; r = k; }
                if (now >= win_start && now < win_end) s->sent_window += r;
                s->sent += r;
                total_sent += r;
            }
        }

        int ready = epoll_wait(ep, events, 1024, phase == 2 ? 1 : 0);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            for (int rounds = 0; rounds < 8; rounds++) {
                for (int j = 0; j < BATCH; j++) { /* the kernel shortens it on every call */
                    rmsg[j].msg_hdr.msg_control = ctrl[j];
                    rmsg[j].msg_hdr.msg_controllen = sizeof ctrl[j];
                }
                int got = recvmmsg(fd, rmsg, BATCH, MSG_DONTWAIT, NULL);
                if (got <= 0) break;
                uint64_t t = now_ns();
                for (int j = 0; j < got; j++) {
                    check(fd, in[j], rmsg[j].msg_len, rx_time(&rmsg[j].msg_hdr, rt_offset, t), nonce, win_start, win_end);
                    if (t >= win_start && t < win_end) recv_in_window_by_arrival++;
                }
                if (got < BATCH) break;
            }
        }
    }

    /* Socket-level drops at the sinks (SO_RXQ_OVFL would need a cmsg per packet): the
     * parent reads /proc/net/udp; here only the totals that the loop itself saw. */
    uint64_t sent_window = 0, expected_window = 0, recv_window = 0, recv_total = 0, expected_total = 0;
    uint64_t seq_err = 0, ts_err = 0, pt_err = 0, reorder = 0, silent = 0;
    for (int i = 0; i < nstreams; i++) sent_window += streams[i].sent_window;
    for (int i = 0; i < nexpects; i++) {
        Expect *e = &expects[i];
        expected_window += streams[e->stream].sent_window;
        expected_total += streams[e->stream].sent;
        recv_window += e->recv_window;
        recv_total += e->recv;
        seq_err += e->seq_errors;
        ts_err += e->ts_errors;
        pt_err += e->pt_errors;
        reorder += e->dup_or_reorder;
        if (!e->recv) silent++;
    }
    /* Config order, for the harness: the newest packet's SRTP index and counter. */
    long long *last_index = calloc(nexpects ? nexpects : 1, sizeof(long long));
    long long *last_counter = calloc(nexpects ? nexpects : 1, sizeof(long long));
    for (int i = 0; i < nexpects; i++) {
        Expect *e = &expects[i];
        last_index[e->order] = last_counter[e->order] = -1;
        uint32_t roc;
        if (e->rx && e->seen && !sd_get_stream_roc(e->rx, e->ssrc, &roc)) {
            last_index[e->order] = (long long)roc << 16 | e->last_seq;
            last_counter[e->order] = e->last_counter;
        }
    }
    double window_s = (double)(win_end - win_start) / 1e9;
    printf("{\"streams\": %d, \"consumers\": %d, \"sinks\": %d, \"window_s\": %.6f, "
           "\"sent_total\": %llu, \"sent_window\": %llu, \"send_errors\": %llu, \"max_lag\": %llu, "
           "\"expected_total\": %llu, \"received_total\": %llu, "
           "\"expected_window\": %llu, \"received_window\": %llu, \"received_window_by_arrival\": %llu, "
           "\"seq_errors\": %llu, \"ts_errors\": %llu, \"pt_errors\": %llu, \"reordered\": %llu, "
           "\"silent_consumers\": %llu, \"unexpected\": %llu, \"stale\": %llu, \"misrouted\": %llu, "
           "\"runts\": %llu, \"latency_us_p50\": %.0f, \"latency_us_p99\": %.0f, \"latency_us_max\": %.0f, "
           "\"sent_per_stream\": [",
           nstreams, nexpects, nsinks, window_s, (unsigned long long)total_sent,
           (unsigned long long)sent_window, (unsigned long long)send_errors, (unsigned long long)late_max,
           (unsigned long long)expected_total, (unsigned long long)recv_total,
           (unsigned long long)expected_window, (unsigned long long)recv_window,
           (unsigned long long)recv_in_window_by_arrival, (unsigned long long)seq_err,
           (unsigned long long)ts_err, (unsigned long long)pt_err, (unsigned long long)reorder,
           (unsigned long long)silent, (unsigned long long)unexpected, (unsigned long long)stale,
           (unsigned long long)misrouted, (unsigned long long)runts, percentile(0.5), percentile(0.99),
           percentile(1.0));
    for (int i = 0; i < nstreams; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)streams[i].sent);
    printf("], \"srtp\": %d, \"srtp_errors\": %llu, \"control_skipped\": %llu, "
           "\"discarded_before\": %llu, \"srtp_last\": [",
           srtp_on, (unsigned long long)srtp_errors, (unsigned long long)control_skipped,
           (unsigned long long)discarded);
    for (int i = 0; i < nexpects && srtp_on; i++)
        printf("%s[%lld, %lld]", i ? ", " : "", last_index[i], last_counter[i]);
    printf("]}\n");
    return 0;
bad:
    fprintf(stderr, "rtpload: bad config line at '%s'\n", word);
    return 2;
}
