/* tureen.workers._native: the optional native fan-out core (docs/benchmarks.md).
 *
 * The same contract as workers/sendbatch.py's SendBatch, written in C because the per-copy
 * work is what the SRTP path pays for in the interpreter: per output copy SendBatch runs a
 * header pack, a payload slice copy, a cffi pointer and a cffi call (~1 us), as much as the
 * AES itself; measured before writing it, a native inner loop ran at 0.8x the speed of C
 * with AES-GCM, pure Python at 0.4x. Nothing else of the worker moves here: the forwarder still receives, demuxes
 * and decides in Python, then calls
 *
 *     FanOut.fanout(fan, buf, view, seq, ts, n) -> copies queued
 *     FanOut.flush() -> copies that failed since the last flush() (the forwarder's counters)
 *
 * once per input packet and once per drain. `fan` is a tuple of RewriteCore (the C base of
 * workers/rtp/consumer.ConsumerRewrite, holding exactly the fields this loop reads and
 * writes, so Python and C see the same values without copying them back and forth).
 *
 * Per copy: the 12-byte header (consumer's SSRC, seq + seq_offset, ts + ts_offset) goes into
 * a queue entry; plain RTP points the entry at the one payload copy of the input packet in
 * `ring`; SRTP (srtp_tx != 0) writes header + payload into its own slot of `sring` and
 * protects it in place with libsrtp's srtp_protect, reached through the function pointer
 * that pylibsrtp's cffi module exports (the same libsrtp + OpenSSL build the Python path
 * uses, and the same srtp_t sessions: this module links nothing). Each consumer's entries
 * form a list; flush() sends them all on each consumer's own connected socket (each
 * transport must send from its own port): by default as one io_uring batch of sendmsg
 * requests (up to 256 copies, every consumer's, per io_uring_enter; a whole SRTP copy goes as
 * a plain send where the kernel has IORING_OP_SEND: no msghdr to copy in; FanOut(...,
 * uring_send=False) keeps sendmsg), else (no io_uring here:
 * old kernel, seccomp, or uring=False) with one sendmmsg per consumer, 64 messages per call.
 * Why io_uring: when a drain holds one input packet, sendmmsg can only batch per socket, so
 * N consumers cost N system calls per packet; scripts/bench_fanout.py measured io_uring at
 * 10-30% less CPU per copy there (docs/benchmarks.md), and the same with bigger drains. The
 * sends are MSG_DONTWAIT and issued in order, so each consumer's copies keep their order.
 *
 * Consumers without a batchable socket (fd < 0: ICE-TCP) and the first packet after a break
 * (sync) call back into Python: send_one(c, buf, view, seq, ts, n) and c.resync(seq, ts).
 *
 * Compiled at install time when a C compiler is there (setup.py, optional); without it the
 * worker runs SendBatch, same behaviour. No Python object is made per copy.
 *
 * The Receiver (below FanOut) is the common case of Forwarder.receive in C, and its drain()
 * one transport socket's whole drain: recvmmsg into its own slots, then per datagram SRTP
 * unprotect (libsrtp's srtp_unprotect, reached as srtp_protect is) and the receive, handing
 * anything else to Python in order (docs/internals.md "The native receive").
 *
 * Two files, one module: the Receiver lives in workers/_native_rx.c, which this file
 * includes after FanOut (a CPython extension built from one translation unit keeps its types
 * and helpers file-static, with no private header or multi-file build); this file holds the
 * types' boilerplate, the io_uring ring (set up by raw system calls, no liburing, and its send
 * path), the fanout()/flush() loop with the sendmmsg path and the module init.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#if defined(__linux__) && __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_URING 1
#endif

#define LANE 64                /* messages per sendmmsg call */
#define RING (256 * 1024)      /* plaintext payload copies between two flushes */
#define SSLOT 1536             /* one protected copy: MAX_SRTP plus the tag, rounded up */
#define SSLOTS 1024            /* protected copies between two flushes */
#define MAX_SRTP 1500          /* srtp.MAX_PACKET_SIZE: what the Python path takes too */
#define START_ENTRIES 4096
#define RECV_SLOT 4096         /* sendbatch.RECV_SLOT: a larger datagram is cut (MSG_TRUNC), counted */

typedef int (*srtp_protect_fn)(void *ctx, void *rtp, int *len);

/* ---------------------------------------------------------------- RewriteCore */

typedef struct {
    PyObject_HEAD
    int fd;                    /* connected UDP socket; -1: send_one per copy */
    unsigned int ssrc;
    unsigned int seq_offset;
    unsigned int ts_offset;
    char sync;                 /* resync() before the next copy */
    unsigned long long srtp_tx; /* srtp_t of the transport's outbound session; 0: plain */
    unsigned long long packets;
    unsigned long long octets;
    unsigned long long payload_octets; /* RTP payload bytes (RFC 3550 SR octet count) */
    unsigned long long send_errors;
    /* FanOut's queue of this consumer between two flushes (entry indices), and whose. */
    void *owner;
    int nq;
    int first;
    int last;
} RewriteCore;

static PyMemberDef rewrite_members[] = {
    {"fd", T_INT, offsetof(RewriteCore, fd), 0, "connected socket fd, -1: per-copy send"},
    {"ssrc", T_UINT, offsetof(RewriteCore, ssrc), 0, "the consumer's SSRC"},
    {"seq_offset", T_UINT, offsetof(RewriteCore, seq_offset), 0, "out seq = in seq + this"},
    {"ts_offset", T_UINT, offsetof(RewriteCore, ts_offset), 0, "out ts = in ts + this"},
    {"sync", T_BOOL, offsetof(RewriteCore, sync), 0, "resync() before the next copy"},
    {"srtp_tx", T_ULONGLONG, offsetof(RewriteCore, srtp_tx), 0, "srtp_t address, 0: plain"},
    {"packets", T_ULONGLONG, offsetof(RewriteCore, packets), 0, "copies sent"},
    {"octets", T_ULONGLONG, offsetof(RewriteCore, octets), 0, "RTP bytes sent"},
    {"payload_octets", T_ULONGLONG, offsetof(RewriteCore, payload_octets), 0,
     "RTP payload bytes sent (no header, no padding): the SR octet count"},
    {"send_errors", T_ULONGLONG, offsetof(RewriteCore, send_errors), 0, "copies lost"},
    {"native_queued", T_INT, offsetof(RewriteCore, nq), READONLY, "copies queued now"},
    {NULL},
};

static PyObject *rewrite_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    RewriteCore *self = (RewriteCore *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->sync = 1;
    }
    return (PyObject *)self;
}

static void rewrite_dealloc(PyObject *self) { Py_TYPE(self)->tp_free(self); }

static PyTypeObject RewriteCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tureen.workers._native.RewriteCore",
    .tp_doc = "The fields of a consumer's rewrite that the fan-out reads and writes.",
    .tp_basicsize = sizeof(RewriteCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = rewrite_new,
    .tp_dealloc = rewrite_dealloc,
    .tp_members = rewrite_members,
};

/* ---------------------------------------------------------------- io_uring */

#define URING_ENTRIES 256

#ifdef HAVE_URING
typedef struct {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_ptr, *cq_ptr;
    size_t sq_size, cq_size, sqes_size;
    unsigned entries;
    int has_send;              /* IORING_OP_SEND is there (5.6+): a whole SRTP copy needs no msghdr */
} Uring;

static void uring_close(Uring *u) {
    if (u->sqes != NULL && u->sqes != MAP_FAILED)
        munmap(u->sqes, u->sqes_size);
    if (u->cq_ptr != NULL && u->cq_ptr != MAP_FAILED && u->cq_ptr != u->sq_ptr)
        munmap(u->cq_ptr, u->cq_size);
    if (u->sq_ptr != NULL && u->sq_ptr != MAP_FAILED)
        munmap(u->sq_ptr, u->sq_size);
    if (u->fd >= 0)
        close(u->fd);
    memset(u, 0, sizeof(*u));
    u->fd = -1;
}

/* 1 when the kernel's io_uring runs opcode `op` (IORING_REGISTER_PROBE, 5.6+), else 0. */
static int uring_supports(int fd, int op) {
    size_t size = sizeof(struct io_uring_probe) + IORING_OP_LAST * sizeof(struct io_uring_probe_op);
    struct io_uring_probe *probe = calloc(1, size);
    if (probe == NULL)
        return 0;
    int ok = syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, probe, IORING_OP_LAST) == 0 &&
             op <= probe->last_op && op < probe->ops_len &&
             (probe->ops[op].flags & IO_URING_OP_SUPPORTED);
    free(probe);
    return ok;
}

/* 0 when the ring is up; -1 (and nothing held) where io_uring is not allowed. */
static int uring_open(Uring *u) {
    struct io_uring_params p;
    memset(u, 0, sizeof(*u));
    memset(&p, 0, sizeof(p));
#ifdef IORING_SETUP_SUBMIT_ALL
    p.flags = IORING_SETUP_SUBMIT_ALL;  /* a request that fails to start does not stop the rest */
#endif
    u->fd = (int)syscall(__NR_io_uring_setup, URING_ENTRIES, &p);
    if (u->fd < 0 && errno == EINVAL) {  /* a kernel older than 5.18 */
        memset(&p, 0, sizeof(p));
        u->fd = (int)syscall(__NR_io_uring_setup, URING_ENTRIES, &p);
    }
    if (u->fd < 0)
        return -1;
    u->sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) {
        if (u->cq_size > u->sq_size)
            u->sq_size = u->cq_size;
        u->cq_size = u->sq_size;
    }
    u->sq_ptr = mmap(NULL, u->sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                     IORING_OFF_SQ_RING);
    if (u->sq_ptr == MAP_FAILED)
        goto fail;
    if (p.features & IORING_FEAT_SINGLE_MMAP)
        u->cq_ptr = u->sq_ptr;
    else {
        u->cq_ptr = mmap(NULL, u->cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                         u->fd, IORING_OFF_CQ_RING);
        if (u->cq_ptr == MAP_FAILED)
            goto fail;
    }
    u->sqes_size = p.sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = mmap(NULL, u->sqes_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                   IORING_OFF_SQES);
    if (u->sqes == MAP_FAILED)
        goto fail;
    char *sq = u->sq_ptr, *cq = u->cq_ptr;
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    u->entries = p.sq_entries < URING_ENTRIES ? p.sq_entries : URING_ENTRIES;
    u->has_send = uring_supports(u->fd, IORING_OP_SEND);
    return 0;
fail:
    uring_close(u);
    return -1;
}
#endif

/* ---------------------------------------------------------------- FanOut */

typedef struct {
    unsigned char hdr[12];
    int next;                  /* the consumer's next entry */
    int n;                     /* RTP length (what the counters count) */
    int pl;                    /* its payload length (payload_octets) */
    int len;                   /* bytes at data */
    char whole;                /* data is the whole packet (SRTP), else the payload */
    char *data;
} Entry;

typedef struct {
    PyObject_HEAD
    srtp_protect_fn protect;
    PyObject *send_one;
    PyObject *resync;          /* interned "resync" */
    char *ring;
    size_t ring_used;
    char *sring;
    int sring_next;
    Entry *entries;
    int nentries;
    int cap;
    RewriteCore **active;
    int nactive;
    int active_cap;
    unsigned long long gen;    /* flushes so far: a callback that flushed shows here */
    unsigned long long calls;  /* sendmmsg calls */
    unsigned long long failed; /* copies lost since the last flush() */
    struct mmsghdr msgs[LANE];
    struct iovec iov[2 * LANE];
    int idx[LANE];
#ifdef HAVE_URING
    int use_uring;
    int uring_send;            /* whole SRTP copies as IORING_OP_SEND (has_send, not turned off) */
    unsigned long long usends; /* copies submitted as IORING_OP_SEND */
    Uring uring;
    struct msghdr umsg[URING_ENTRIES];
    struct iovec uiov[2 * URING_ENTRIES];
    RewriteCore *uowner[URING_ENTRIES];
    int uentry[URING_ENTRIES];
#endif
} FanOut;

static int fanout_init(FanOut *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"protect_address", "send_one", "uring", "uring_send", NULL};
    unsigned long long addr = 0;
    PyObject *send_one = NULL;
    int uring = 1;
    int uring_send = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KO|pp", kwlist, &addr, &send_one, &uring,
                                     &uring_send))
        return -1;
    if (!PyCallable_Check(send_one)) {
        PyErr_SetString(PyExc_TypeError, "send_one must be callable");
        return -1;
    }
    if (self->ring != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FanOut is already initialised");
        return -1;
    }
    self->protect = (srtp_protect_fn)(uintptr_t)addr;
#ifdef HAVE_URING
    self->uring.fd = -1;
    if (uring && uring_open(&self->uring) == 0) {  /* else (seccomp, old kernel): sendmmsg */
        self->use_uring = 1;
        self->uring_send = uring_send && self->uring.has_send;
    }
#else
    (void)uring;
    (void)uring_send;
#endif
    Py_INCREF(send_one);
    self->send_one = send_one;
    self->resync = PyUnicode_InternFromString("resync");
    self->ring = PyMem_RawMalloc(RING);
    self->sring = PyMem_RawMalloc((size_t)SSLOT * SSLOTS);
    self->cap = START_ENTRIES;
    self->entries = PyMem_RawMalloc(sizeof(Entry) * self->cap);
    self->active_cap = 256;
    self->active = PyMem_RawMalloc(sizeof(RewriteCore *) * self->active_cap);
    if (!self->resync || !self->ring || !self->sring || !self->entries || !self->active) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* The msghdr of one queued copy: header + payload iovecs, or the whole SRTP packet. */
static void fill_msg(struct msghdr *h, struct iovec *v, Entry *en) {
    h->msg_name = NULL;
    h->msg_namelen = 0;
    h->msg_iov = v;
    h->msg_control = NULL;
    h->msg_controllen = 0;
    h->msg_flags = 0;
    if (en->whole) {
        v[0].iov_base = en->data;
        v[0].iov_len = (size_t)en->len;
        h->msg_iovlen = 1;
    } else {
        v[0].iov_base = en->hdr;
        v[0].iov_len = 12;
        v[1].iov_base = en->data;
        v[1].iov_len = (size_t)en->len;
        h->msg_iovlen = 2;
    }
}

#ifdef HAVE_URING
/* Submit the m prepared sends, wait for them, count the failures. */
static void uring_run(FanOut *self, unsigned m) {
    Uring *u = &self->uring;
    unsigned mask = *u->sq_mask;
    unsigned tail = *u->sq_tail;
    for (unsigned j = 0; j < m; j++) {
        unsigned idx = tail & mask;
        struct io_uring_sqe *sqe = &u->sqes[idx];
        memset(sqe, 0, sizeof(*sqe));
        sqe->fd = self->uowner[j]->fd;
        sqe->msg_flags = MSG_DONTWAIT;
        Entry *en = &self->entries[self->uentry[j]];
        if (en->whole && self->uring_send) {
            /* One buffer on a connected socket: a plain send, so the kernel copies no
             * msghdr and imports no iovec per copy (io_msg_copy_hdr in the profile). */
            sqe->opcode = IORING_OP_SEND;
            sqe->addr = (unsigned long long)(uintptr_t)en->data;
            sqe->len = (unsigned)en->len;
            self->usends++;
        } else {
            sqe->opcode = IORING_OP_SENDMSG;
            sqe->addr = (unsigned long long)(uintptr_t)&self->umsg[j];
            sqe->len = 1;
        }
        sqe->user_data = j;
        u->sq_array[idx] = idx;
        tail++;
    }
    __atomic_store_n(u->sq_tail, tail, __ATOMIC_RELEASE);
    /* The sends complete inline (MSG_DONTWAIT: never parked on a poll), so the first
     * io_uring_enter normally submits and completes all m. It only waits for requests the
     * kernel has taken (`taken` - `done`), so it can never wait for one still in the ring. */
    unsigned done = 0, taken = 0;
    int idle = 0;
    while (done < m) {
        unsigned wait = taken - done;
        int r = (int)syscall(__NR_io_uring_enter, u->fd, m - taken, wait,
                             wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
        if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
            /* Cannot happen with a good ring. Stop using it (the sendmmsg path takes over
             * from the next flush; closing the ring at dealloc cancels anything still in
             * it) and count what did not complete as lost. */
            self->use_uring = 0;
            self->failed += m - done;
            break;
        }
        if (r > 0)
            taken += (unsigned)r;
        unsigned head = *u->cq_head;
        unsigned ctail = __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE);
        unsigned reaped = ctail - head;
        while (head != ctail) {
            struct io_uring_cqe *cqe = &u->cqes[head & *u->cq_mask];
            if (cqe->res < 0) {
                unsigned j = (unsigned)cqe->user_data;
                RewriteCore *c = self->uowner[j];
                c->send_errors++;
                c->packets--;
                c->octets -= (unsigned long long)self->entries[self->uentry[j]].n;
                c->payload_octets -= (unsigned long long)self->entries[self->uentry[j]].pl;
                self->failed++;
            }
            head++;
            done++;
        }
        __atomic_store_n(u->cq_head, head, __ATOMIC_RELEASE);
        if (r <= 0 && reaped == 0 && ++idle > 1000) {  /* no progress at all: give up on it */
            self->use_uring = 0;
            self->failed += m - done;
            break;
        }
    }
    self->calls++;
}

static void send_all_uring(FanOut *self) {
    unsigned m = 0;
    for (int a = 0; a < self->nactive; a++) {
        RewriteCore *c = self->active[a];
        int e = c->first;
        for (int k = c->nq; k > 0; k--) {
            Entry *en = &self->entries[e];
            if (!(en->whole && self->uring_send))  /* else uring_run sends en->data itself */
                fill_msg(&self->umsg[m], &self->uiov[2 * m], en);
            self->uowner[m] = c;
            self->uentry[m] = e;
            e = en->next;
            if (++m == self->uring.entries) {
                uring_run(self, m);
                m = 0;
            }
        }
        c->nq = 0;
    }
    if (m)
        uring_run(self, m);
}
#endif

/* Send everything queued: one sendmmsg per consumer and LANE messages. A message that
 * fails (ENOBUFS, EAGAIN, ECONNREFUSED from an earlier ICMP, EBADF) is lost and counted on
 * its consumer and in `failed`; EINTR is retried. Never raises. */
static void send_all(FanOut *self) {
    int nactive = self->nactive;
    RewriteCore **active = self->active;
#ifdef HAVE_URING
    if (self->use_uring) {
        send_all_uring(self);
        nactive = 0;  /* skips the sendmmsg loop; the reset and the DECREFs below still run */
    }
#endif
    for (int a = 0; a < nactive; a++) {
        RewriteCore *c = active[a];
        int k = c->nq;
        int e = c->first;
        c->nq = 0;
        while (k > 0) {
            int m = k < LANE ? k : LANE;
            for (int j = 0; j < m; j++) {
                Entry *en = &self->entries[e];
                fill_msg(&self->msgs[j].msg_hdr, &self->iov[2 * j], en);
                self->idx[j] = e;
                e = en->next;
            }
            int done = 0;
            while (done < m) {
                int r = sendmmsg(c->fd, &self->msgs[done], (unsigned int)(m - done), 0);
                self->calls++;
                if (r > 0) {
                    done += r;
                    continue;
                }
                if (r < 0 && errno == EINTR)
                    continue;
                /* The message at `done` failed: lost, counted; the rest are retried. */
                c->send_errors++;
                c->packets--;
                c->octets -= (unsigned long long)self->entries[self->idx[done]].n;
                c->payload_octets -= (unsigned long long)self->entries[self->idx[done]].pl;
                self->failed++;
                done++;
            }
            k -= m;
        }
    }
    int held = self->nactive;
    self->nactive = 0;
    self->nentries = 0;
    self->ring_used = 0;
    self->sring_next = 0;
    self->gen++;
    for (int a = 0; a < held; a++)
        Py_DECREF((PyObject *)active[a]);
}

static inline void put_header(unsigned char *h, unsigned char b0, unsigned char b1,
                              unsigned int seq, unsigned int ts, unsigned int ssrc) {
    h[0] = b0;
    h[1] = b1;
    h[2] = (unsigned char)(seq >> 8);
    h[3] = (unsigned char)seq;
    h[4] = (unsigned char)(ts >> 24);
    h[5] = (unsigned char)(ts >> 16);
    h[6] = (unsigned char)(ts >> 8);
    h[7] = (unsigned char)ts;
    h[8] = (unsigned char)(ssrc >> 24);
    h[9] = (unsigned char)(ssrc >> 16);
    h[10] = (unsigned char)(ssrc >> 8);
    h[11] = (unsigned char)ssrc;
}

/* The input packet's payload, copied into the ring (flushing first if it is full). */
static char *copy_payload(FanOut *self, const char *payload, size_t plen) {
    if (self->ring_used + plen > RING)
        send_all(self);
    char *dst = self->ring + self->ring_used;
    memcpy(dst, payload, plen);
    self->ring_used += plen;
    return dst;
}

static int queue(FanOut *self, RewriteCore *c) {
    if (self->nentries == self->cap) {
        int cap = self->cap * 2;
        Entry *grown = PyMem_RawRealloc(self->entries, sizeof(Entry) * cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->entries = grown;
        self->cap = cap;
    }
    if (c->nq == 0) {
        if (self->nactive == self->active_cap) {
            int cap = self->active_cap * 2;
            RewriteCore **grown = PyMem_RawRealloc(self->active, sizeof(RewriteCore *) * cap);
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            self->active = grown;
            self->active_cap = cap;
        }
        Py_INCREF(c);
        self->active[self->nactive++] = c;
    }
    return self->nentries++;
}

static void link_entry(FanOut *self, RewriteCore *c, int e) {
    if (c->nq == 0) {
        c->first = e;
        c->owner = self;
    } else {
        self->entries[c->last].next = e;
    }
    self->entries[e].next = -1;
    c->last = e;
    c->nq++;
}

PyDoc_STRVAR(fanout_doc,
"fanout(fan, buf, view, seq, ts, n) -> int\n\n"
"Queue one rewritten copy of the RTP packet in buf[:n] per consumer of `fan` (a tuple of\n"
"RewriteCore); return how many were queued or sent. seq/ts are the packet's.");

/* The fan-out of the packet in buf[:n] (validated by the caller) to every consumer of the
 * tuple `fan`: returns the copies queued or sent, -1 with an exception set. args holds the
 * Python objects (fan, buf, view, seq, ts, n) for the callbacks (resync, send_one); view may
 * be NULL when no consumer of `fan` has fd < 0 (the native receive checks that). */
static long fan_core(FanOut *self, PyObject *const *args, unsigned long seq, unsigned long ts,
                     Py_ssize_t n) {
    PyObject *fan = args[0];
    PyObject *buf = args[1];
    const char *pkt = PyByteArray_AS_STRING(buf);
    size_t plen = (size_t)n - 12;
    unsigned char b0 = (unsigned char)pkt[0], b1 = (unsigned char)pkt[1];
    /* The payload's length (the forwarder validated the header): n minus the header with
     * its CSRCs and extension, minus the padding. What RFC 3550's SR octet count counts. */
    Py_ssize_t hl = 12 + 4 * (b0 & 0x0F);
    if ((b0 & 0x10) && hl + 4 <= n)
        hl += 4 + 4 * ((((unsigned char)pkt[hl + 2]) << 8) | (unsigned char)pkt[hl + 3]);
    long pl = (long)(n - hl) - ((b0 & 0x20) ? (unsigned char)pkt[n - 1] : 0);
    if (pl < 0)
        pl = 0;
    Py_ssize_t count = PyTuple_GET_SIZE(fan);
    long sent = 0;
    char *payload = NULL;      /* this packet's payload in the ring, copied on first need */
    unsigned long long gen = self->gen;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *o = PyTuple_GET_ITEM(fan, i);
        if (!PyObject_TypeCheck(o, &RewriteCoreType)) {
            PyErr_Format(PyExc_TypeError, "fan[%zd] is %.80s, not a RewriteCore", i,
                         Py_TYPE(o)->tp_name);
            return -1;
        }
        RewriteCore *c = (RewriteCore *)o;
        if (c->nq && c->owner != (void *)self) {
            PyErr_SetString(PyExc_RuntimeError,
                            "a consumer is queued in another FanOut (one FanOut per worker)");
            return -1;
        }
        if (c->sync) {
            PyObject *r = PyObject_CallMethodObjArgs(o, self->resync, args[3], args[4], NULL);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        }
        if (c->fd < 0) {
            if (args[2] == NULL) {
                PyErr_SetString(PyExc_RuntimeError, "fan_core: a per-copy consumer without a view");
                return -1;
            }
            PyObject *call[6] = {o, buf, args[2], args[3], args[4], args[5]};
            PyObject *r = PyObject_Vectorcall(self->send_one, call, 6, NULL);
            if (r == NULL)
                return -1;
            sent += PyLong_AsLong(r);
            Py_DECREF(r);
            if (PyErr_Occurred())
                return -1;
            pkt = PyByteArray_AS_STRING(buf);
            continue;
        }
        if (self->gen != gen) {  /* a flush since the payload was copied (ring reset) */
            payload = NULL;
            gen = self->gen;
        }
        unsigned int out_seq = (unsigned int)((seq + c->seq_offset) & 0xFFFF);
        unsigned int out_ts = (unsigned int)((ts + c->ts_offset) & 0xFFFFFFFFUL);
        Entry *en;
        int e;
        if (c->srtp_tx) {
            if (n > MAX_SRTP || self->protect == NULL) {
                c->send_errors++;
                continue;
            }
            if (self->sring_next == SSLOTS) {
                send_all(self);
                payload = NULL;
                gen = self->gen;
            }
            char *slot = self->sring + (size_t)SSLOT * self->sring_next;
            put_header((unsigned char *)slot, b0, b1, out_seq, out_ts, c->ssrc);
            memcpy(slot + 12, pkt + 12, plen);
            int len = (int)n;
            if (self->protect((void *)(uintptr_t)c->srtp_tx, slot, &len) != 0) {
                c->send_errors++;  /* counted here; the forwarder counts the copy not sent */
                continue;
            }
            self->sring_next++;
            if ((e = queue(self, c)) < 0)
                return -1;
            en = &self->entries[e];
            en->whole = 1;
            en->data = slot;
            en->len = len;
        } else {
            if (payload == NULL) {
                payload = copy_payload(self, pkt + 12, plen);
                gen = self->gen;
            }
            if ((e = queue(self, c)) < 0)
                return -1;
            en = &self->entries[e];
            put_header(en->hdr, b0, b1, out_seq, out_ts, c->ssrc);
            en->whole = 0;
            en->data = payload;
            en->len = (int)plen;
        }
        en->n = (int)n;
        en->pl = (int)pl;
        link_entry(self, c, e);
        c->packets++;
        c->octets += (unsigned long long)n;
        c->payload_octets += (unsigned long long)pl;
        sent++;
    }
    return sent;
}

static PyObject *fanout_fanout(FanOut *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "fanout() takes (fan, buf, view, seq, ts, n)");
        return NULL;
    }
    PyObject *fan = args[0];
    PyObject *buf = args[1];
    if (!PyTuple_Check(fan) || !PyByteArray_Check(buf)) {
        PyErr_SetString(PyExc_TypeError, "fanout() needs a tuple fan and a bytearray buf");
        return NULL;
    }
    unsigned long seq = PyLong_AsUnsignedLong(args[3]);
    unsigned long ts = PyLong_AsUnsignedLong(args[4]);
    Py_ssize_t n = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 12 || n > PyByteArray_GET_SIZE(buf)) {
        PyErr_SetString(PyExc_ValueError, "fanout(): n must be 12..len(buf)");
        return NULL;
    }
    if ((size_t)n - 12 > RING) {
        PyErr_SetString(PyExc_ValueError, "fanout(): packet larger than the ring");
        return NULL;
    }
    long sent = fan_core(self, args, seq, ts, n);
    if (sent < 0)
        return NULL;
    return PyLong_FromLong(sent);
}

PyDoc_STRVAR(flush_doc,
"flush() -> int\n\n"
"Send every copy queued (one sendmmsg per consumer); return how many copies failed since\n"
"the last flush() (including flushes fanout() made when a buffer was full).");

/* flush()'s work, also the native loop's after a drain (workers/_native_loop.c). */
static unsigned long long fanout_flush_now(FanOut *self) {
    if (self->nactive)
        send_all(self);
    else {
        self->ring_used = 0;
        self->sring_next = 0;
        self->nentries = 0;
    }
    unsigned long long failed = self->failed;
    self->failed = 0;
    return failed;
}

static PyObject *fanout_flush(FanOut *self, PyObject *unused) {
    return PyLong_FromUnsignedLongLong(fanout_flush_now(self));
}

static PyObject *fanout_dump(FanOut *self, PyObject *unused) {
    const char *send = "sendmmsg";
    unsigned long long usends = 0;
#ifdef HAVE_URING
    if (self->use_uring)
        send = "io_uring";
    usends = self->usends;
#endif
    /* sendmmsgCalls: the send system calls made (sendmmsg, or io_uring_enter batches);
     * uringSends: copies (whole SRTP packets) submitted as io_uring's plain send, not sendmsg. */
    return Py_BuildValue("{s:s,s:s,s:K,s:K,s:i,s:K}", "core", "native", "send", send, "flushes",
                         self->gen, "sendmmsgCalls", self->calls, "entries", self->cap,
                         "uringSends", usends);
}

static void fanout_dealloc(FanOut *self) {
#ifdef HAVE_URING
    if (self->uring.sqes != NULL)
        uring_close(&self->uring);
#endif
    for (int a = 0; a < self->nactive; a++) {
        self->active[a]->nq = 0;
        Py_DECREF((PyObject *)self->active[a]);
    }
    Py_XDECREF(self->send_one);
    Py_XDECREF(self->resync);
    PyMem_RawFree(self->ring);
    PyMem_RawFree(self->sring);
    PyMem_RawFree(self->entries);
    PyMem_RawFree(self->active);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef fanout_methods[] = {
    {"fanout", (PyCFunction)(void (*)(void))fanout_fanout, METH_FASTCALL, fanout_doc},
    {"flush", (PyCFunction)fanout_flush, METH_NOARGS, flush_doc},
    {"dump", (PyCFunction)fanout_dump, METH_NOARGS, "Counters for worker.dump."},
    {NULL},
};

static PyTypeObject FanOutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tureen.workers._native.FanOut",
    .tp_doc = "FanOut(protect_address, send_one): the batched fan-out of one worker.",
    .tp_basicsize = sizeof(FanOut),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)fanout_init,
    .tp_dealloc = (destructor)fanout_dealloc,
    .tp_methods = fanout_methods,
};

/* ---------------------------------------------------------------- Receiver: workers/_native_rx.c */
#include "_native_rx.c"
/* ---------------------------------------------------------------- the pipe: workers/_native_pipe.c */
#include "_native_pipe.c"

/* ---------------------------------------------------------------- NativeLoop: workers/_native_loop.c */
#include "_native_loop.c"

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tureen.workers._native",
    .m_doc = "The optional native fan-out core of a Tureen worker (see workers/_native.c).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&RewriteCoreType) < 0 || PyType_Ready(&FanOutType) < 0 ||
        PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&NativeReaderType) < 0 ||
        PyType_Ready(&NativeLoopType) < 0)
        return NULL;
    for (int a = 0; a < A_COUNT; a++)
        if ((attr[a] = PyUnicode_InternFromString(attr_names[a])) == NULL)
            return NULL;
    if (pipe_init_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RewriteCoreType);
    Py_INCREF(&FanOutType);
    Py_INCREF(&ReceiverType);
    Py_INCREF(&NativeLoopType);
    Py_INCREF(&NativeReaderType);
    if (PyModule_AddObject(m, "RewriteCore", (PyObject *)&RewriteCoreType) < 0 ||
        PyModule_AddObject(m, "FanOut", (PyObject *)&FanOutType) < 0 ||
        PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObject(m, "NativeLoop", (PyObject *)&NativeLoopType) < 0 ||
        PyModule_AddObject(m, "NativeReader", (PyObject *)&NativeReaderType) < 0 ||
        PyModule_AddIntConstant(m, "LANE", LANE) < 0 ||
        PyModule_AddIntConstant(m, "SRING_SLOTS", SSLOTS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
