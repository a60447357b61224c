/* tureen.workers._native, part two: the Receiver (the common receive case and the drain).
 *
 * Not a translation unit of its own: workers/_native.c includes this file where the Receiver
 * used to be (after FanOut, whose fan_core and queue it calls directly), so the two share the
 * file-static types and functions without a private header. Moved here unchanged from
 * _native.c; setup.py lists it in `depends` so that a change rebuilds the module.
 */
/* ---------------------------------------------------------------- Receiver
 *
 * The common case of Forwarder.receive (workers/forward.py) in C: one call per datagram
 * instead of the interpreter's ~70 lines. It decides from the packet and the stream's table
 * contents, *before changing anything*, whether the packet is the common case:
 *
 *   RTP (not RTCP) with a well-formed header (CSRCs, padding, header extensions: their ids
 *   remapped, an audio level read); an SSRC of `source.ssrc_table`
 *   (so not RTX, not unknown); producer not paused; payload type mapped; not late (the
 *   stream's newest or newer); no consumer waiting for a start point (`stream.waiting`), no
 *   pipe (`stream.pipes`) but PipeBatch ones with room (workers/_native_pipe.c appends the
 *   packet to them); the NACK generator, if any, in order, and with nothing pending or, while
 *   packets are pending, not right after a frame end (a possible key-frame start, which
 *   cancels entries: Python's check); every consumer of the fan with a batchable socket.
 *
 * Anything else goes to `fallback` (Forwarder.receive_python), which then does all of it: so
 * the results are the Python path's by construction. The common case does exactly what the
 * Python path does for it, on the same objects: the payload-type rewrite, the reception
 * statistics (RFC 3550 A.1/A.8: max_seq, cycles, transit, jitter, max_at from
 * CLOCK_MONOTONIC, which is time.monotonic's clock), stream packets/octets, the audio level
 * (level_sum, level_count), the NACK
 * generator's `expected` (and `frame_end` on a marker while packets are pending), the retransmission store (a `bytes` copy, video), `rtp_in`, the
 * fan-out (fan_core above) and `rtp_out` / `send_errors`. tests/unit/test_native_rx.py runs
 * both on the same captured packets and compares bytes and counters. */

enum {
    A_SSRC_TABLE, A_PAUSED, A_PT_MAP, A_NACK, A_EXPECTED, A_PENDING, A_WAITING, A_PIPES,
    A_STORE, A_FAN, A_MAX_SEQ, A_MAX_TS, A_MAX_AT, A_PACKETS, A_OCTETS, A_CLOCK_RATE,
    A_TRANSIT, A_JITTER, A_CYCLES, A_BASE_SEQ, A_RTP_IN, A_RTP_OUT, A_SEND_ERRORS, A_EXT_MAP,
    A_LEVEL_ID, A_LEVEL_SUM, A_LEVEL_COUNT, A_SRTP, A_RX_ADDRESS, A_SRTP_ERRORS, A_FRAME_END,
    A_COUNT
};
static const char *attr_names[A_COUNT] = {
    "ssrc_table", "paused", "pt_map", "nack", "expected", "pending", "waiting", "pipes",
    "store", "fan", "max_seq", "max_ts", "max_at", "packets", "octets", "clock_rate",
    "transit", "jitter", "cycles", "base_seq", "rtp_in", "rtp_out", "send_errors", "ext_map",
    "level_id", "level_sum", "level_count", "srtp", "rx_address", "srtp_errors", "frame_end",
};
static PyObject *attr[A_COUNT];

/* Where a __slots__ class keeps its attributes: the offset of each slot in the object (what
 * CPython's specialised LOAD_ATTR_SLOT / STORE_ATTR_SLOT use). Reading and writing a slot
 * through its offset is what makes the C path cheaper than the interpreter's: with a generic
 * PyObject_GetAttr/SetAttr per field the receive of one packet cost 1.29 us against Python's
 * 1.73, through the offsets 0.82 (scripts/bench_fanout.py --rx --n 0, loop included).
 * Resolved once per type. */
typedef struct {
    PyTypeObject *type;        /* borrowed: compared, never dereferenced after a change */
    Py_ssize_t off[A_COUNT];   /* 0: not a slot of this type */
} Slots;

static int resolve_slots(Slots *sl, PyTypeObject *tp, const int *names, int count) {
    memset(sl->off, 0, sizeof(sl->off));
    for (int i = 0; i < count; i++) {
        PyObject *d = _PyType_Lookup(tp, attr[names[i]]);  /* borrowed */
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
            return -1;
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type != T_OBJECT_EX || (m->flags & READONLY))
            return -1;
        sl->off[names[i]] = m->offset;
    }
    sl->type = tp;
    return 0;
}

static const int stream_names[] = {
    A_PAUSED, A_PT_MAP, A_NACK, A_WAITING, A_PIPES, A_STORE, A_FAN, A_MAX_SEQ, A_MAX_TS,
    A_MAX_AT, A_PACKETS, A_OCTETS, A_CLOCK_RATE, A_TRANSIT, A_JITTER, A_CYCLES, A_BASE_SEQ,
    A_EXT_MAP, A_LEVEL_ID, A_LEVEL_SUM, A_LEVEL_COUNT,
};
static const int nack_names[] = {A_EXPECTED, A_PENDING, A_FRAME_END};
static const int fwd_names[] = {A_RTP_IN, A_RTP_OUT, A_SEND_ERRORS};
#define NAMES(a) (a), (int)(sizeof(a) / sizeof((a)[0]))

#define SLOT(o, sl, a) (*(PyObject **)((char *)(o) + (sl)->off[a]))

/* obj's slot `a` := v (a new reference; NULL: -1). What STORE_ATTR_SLOT does. */
static int slot_set(PyObject *o, const Slots *sl, int a, PyObject *v) {
    if (v == NULL)
        return -1;
    PyObject **p = (PyObject **)((char *)o + sl->off[a]);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
    return 0;
}

/* An int slot's value; 0 with *err set when it is unset or not an int that fits. */
static long long slot_ll(PyObject *o, const Slots *sl, int a, int *err) {
    PyObject *v = SLOT(o, sl, a);
    if (v == NULL || !PyLong_CheckExact(v)) {
        *err = 1;
        return 0;
    }
    int overflow;
    long long r = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow)
        *err = 1;
    return r;
}

/* shared/rtp/packet.header_length: the payload offset of the RTP header in p[:n], -1 when
 * it is malformed (the Python path then counts the drop). */
static Py_ssize_t rtp_header_length(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t offset = 12 + ((p[0] & 0x0F) << 2);
    if (p[0] & 0x10) {
        if (offset + 4 > n)
            return -1;
        offset += 4 + ((((Py_ssize_t)p[offset + 2] << 8) | p[offset + 3]) << 2);
    }
    if (offset > n)
        return -1;
    if (p[0] & 0x20) {
        unsigned char pad = p[n - 1];
        if (pad == 0 || offset + pad > n)
            return -1;
    }
    return offset;
}

/* shared/rtp/packet.rewrite_extension_ids on the extension block ending at `end`: with
 * apply = 0 only whether it is well formed (0) or not (-1), changing nothing; with apply = 1
 * the ids remapped through map[256] (0, or > 14 in the one-byte form: overwritten with
 * padding). The walk does not depend on what it overwrites, so a block that checked out
 * rewrites without an error. */
static int ext_ids(unsigned char *p, Py_ssize_t end, const unsigned char *map, int apply) {
    Py_ssize_t start = 12 + ((p[0] & 0x0F) << 2);
    unsigned int profile = ((unsigned int)p[start] << 8) | p[start + 1];
    Py_ssize_t i = start + 4;
    if (profile == 0xBEDE) {
        while (i < end) {
            unsigned char b = p[i];
            if (b == 0) {
                i++;
                continue;
            }
            unsigned char id = b >> 4;
            if (id == 15)
                break;
            Py_ssize_t size = (b & 0x0F) + 1;
            if (i + 1 + size > end)
                return -1;
            if (apply) {
                unsigned char to = map[id];
                if (to == 0 || to > 14)
                    memset(p + i, 0, (size_t)(1 + size));
                else if (to != id)
                    p[i] = (unsigned char)((to << 4) | (b & 0x0F));
            }
            i += 1 + size;
        }
    } else if ((profile & 0xFFF0) == 0x1000) {
        while (i < end) {
            unsigned char id = p[i];
            if (id == 0) {
                i++;
                continue;
            }
            if (i + 2 > end)
                return -1;
            Py_ssize_t size = p[i + 1];
            if (i + 2 + size > end)
                return -1;
            if (apply) {
                unsigned char to = map[id];
                if (to == 0)
                    memset(p + i, 0, (size_t)(2 + size));
                else if (to != id)
                    p[i] = to;
            }
            i += 2 + size;
        }
    }
    return 0;
}

/* The RFC 6464 level forward.py's receive_python adds for an audio stream (`level_id` set),
 * in the header p (validated, ids already remapped): first its shortcut (senders put the
 * level first: the byte after the block's 4-byte header), else shared/rtp/packet
 * .read_audio_level's scan. 0..127, or -1 when the packet has no one-byte element `id`. Reads
 * stay inside the validated header, as the Python ones do. */
static int audio_level(const unsigned char *p, int id) {
    Py_ssize_t x = 16 + ((p[0] & 0x0F) << 2);
    if (p[x] == (id << 4) && p[x - 4] == 0xBE && p[x - 1])
        return p[x + 1] & 0x7F;
    Py_ssize_t start = 12 + ((p[0] & 0x0F) << 2);
    Py_ssize_t i = start + 4;
    Py_ssize_t end = i + ((((Py_ssize_t)p[start + 2] << 8) | p[start + 3]) << 2);
    if (p[start] == 0xBE && p[start + 1] == 0xDE) {
        while (i < end) {
            unsigned char b = p[i];
            if (b == 0) {
                i++;
                continue;
            }
            if ((b >> 4) == id)
                return (b & 0x0F) == 0 ? (p[i + 1] & 0x7F) : -1;
            if ((b >> 4) == 15)
                break;
            i += (b & 0x0F) + 2;
        }
    } else if (p[start] == 0x10 && !(p[start + 1] & 0xF0)) {
        while (i + 1 < end) {
            if (p[i] == 0) {
                i++;
                continue;
            }
            if (p[i] == id)
                return p[i + 1] == 1 ? (p[i + 2] & 0x7F) : -1;
            i += p[i + 1] + 2;
        }
    }
    return -1;
}

typedef struct {
    PyObject_HEAD
    FanOut *fo;
    PyObject *fwd;
    PyObject *fallback;
    PyObject *buf;             /* fwd.buf: the worker's receive buffer (bytearray) */
    unsigned long store_mask;
    unsigned long long fast;   /* packets the native path took */
    unsigned long long slow;   /* packets handed to the fallback */
    unsigned long long unprotected; /* SRTP packets drain() unprotected */
    Slots fwd_slots;
    Slots stream_slots;
    Slots nack_slots;
    /* drain(): recvmmsg slots (RECV_SLOT bytes each) and their headers, and libsrtp's
     * srtp_unprotect (NULL: WebRTC packets are unprotected by the transport in Python). */
    srtp_protect_fn unprotect;
    int nslots;
    int draining;
    char *slots;
    struct mmsghdr *rmsgs;
    struct iovec *riov;
    /* set_pipe (workers/_native_pipe.c): the pipe batch type whose records rx_fast appends,
     * its `out` and `count` slots, and the bytes a batch may grow to natively. */
    PyObject *pipe_type;
    Py_ssize_t pipe_out, pipe_count, pipe_max;
} Receiver;

/* The pipe's native ends, in workers/_native_pipe.c (included after this file). */
static int pipe_ready(Receiver *self, PyObject *pipes, Py_ssize_t n);
static int pipe_append(Receiver *self, PyObject *pipes, const unsigned char *p, Py_ssize_t n);
static PyObject *rx_set_pipe(Receiver *self, PyObject *args);
static PyObject *rx_pipe_drain(Receiver *self, PyObject *const *args, Py_ssize_t nargs);

static int rx_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fanout", "forwarder", "fallback", "store_mask", "unprotect_address",
                             "drain", NULL};
    PyObject *fo, *fwd, *fallback;
    unsigned long mask;
    unsigned long long unprotect = 0;
    int nslots = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOk|Ki", kwlist, &FanOutType, &fo, &fwd,
                                     &fallback, &mask, &unprotect, &nslots))
        return -1;
    if (nslots < 1 || nslots > 1024) {
        PyErr_SetString(PyExc_ValueError, "drain must be 1..1024 datagrams");
        return -1;
    }
    if (self->slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is already initialised");
        return -1;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    if (resolve_slots(&self->fwd_slots, Py_TYPE(fwd), NAMES(fwd_names)) < 0) {
        PyErr_SetString(PyExc_TypeError,
                        "forwarder must keep rtp_in, rtp_out and send_errors in __slots__");
        return -1;
    }
    PyObject *buf = PyObject_GetAttrString(fwd, "buf");
    if (buf == NULL)
        return -1;
    if (!PyByteArray_Check(buf)) {
        Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError, "forwarder.buf must be a bytearray");
        return -1;
    }
    Py_INCREF(fo);
    Py_INCREF(fwd);
    Py_INCREF(fallback);
    Py_XSETREF(self->fo, (FanOut *)fo);
    Py_XSETREF(self->fwd, fwd);
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->buf, buf);
    self->store_mask = mask;
    self->stream_slots.type = NULL;
    self->nack_slots.type = NULL;
    self->unprotect = (srtp_protect_fn)(uintptr_t)unprotect;
    self->nslots = nslots;
    self->slots = PyMem_RawMalloc((size_t)RECV_SLOT * nslots);
    self->rmsgs = PyMem_RawCalloc((size_t)nslots, sizeof(struct mmsghdr));
    self->riov = PyMem_RawCalloc((size_t)nslots, sizeof(struct iovec));
    if (!self->slots || !self->rmsgs || !self->riov) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < nslots; i++) {
        self->riov[i].iov_base = self->slots + (size_t)RECV_SLOT * i;
        self->riov[i].iov_len = RECV_SLOT;
        self->rmsgs[i].msg_hdr.msg_iov = &self->riov[i];
        self->rmsgs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

/* The forwarder holds its Receiver (fwd.rx, fwd.receive) and the Receiver its forwarder: a
 * cycle the garbage collector must be able to break, or every Forwarder (its buffers, its
 * FanOut's rings and io_uring) would live forever. */
static int rx_traverse(Receiver *self, visitproc visit, void *arg) {
    Py_VISIT(self->fo);
    Py_VISIT(self->fwd);
    Py_VISIT(self->fallback);
    Py_VISIT(self->buf);
    Py_VISIT(self->pipe_type);
    return 0;
}

static int rx_clear(Receiver *self) {
    Py_CLEAR(self->fo);
    Py_CLEAR(self->fwd);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->buf);
    Py_CLEAR(self->pipe_type);
    return 0;
}

static void rx_dealloc(Receiver *self) {
    PyObject_GC_UnTrack(self);
    rx_clear(self);
    PyMem_RawFree(self->slots);
    PyMem_RawFree(self->rmsgs);
    PyMem_RawFree(self->riov);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 1: the common case, forwarded; 0: not the common case, nothing changed; -1: error. */
static int rx_fast(Receiver *self, PyObject *source, Py_ssize_t n) {
    PyObject *buf = self->buf;
    if (n < 12 || n > PyByteArray_GET_SIZE(buf) || (size_t)n - 12 > RING)
        return 0;
    unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(buf);
    unsigned char b0 = p[0], b1 = p[1];
    if (b0 < 128 || b0 > 191 || (b1 >= 192 && b1 <= 223))
        return 0;  /* not RTP, or RTCP */
    Py_ssize_t hlen = 12;
    if ((b0 & 0x3F) && (hlen = rtp_header_length(p, n)) < 0)
        return 0;  /* malformed CSRC/extension/padding: the Python path counts the drop */
    if (source == Py_None)
        return 0;  /* a piped packet's source (scripts/bench_pipe.py) */
    unsigned long seq = ((unsigned long)p[2] << 8) | p[3];
    unsigned long ts = ((unsigned long)p[4] << 24) | ((unsigned long)p[5] << 16) |
                       ((unsigned long)p[6] << 8) | p[7];
    unsigned long ssrc = ((unsigned long)p[8] << 24) | ((unsigned long)p[9] << 16) |
                         ((unsigned long)p[10] << 8) | p[11];
    int rc = -1, err = 0, nack_mid_frame = 0;
    PyObject *table = NULL, *key = NULL, *stream = NULL, *seqo = NULL, *tso = NULL, *no = NULL;
    table = PyObject_GetAttr(source, attr[A_SSRC_TABLE]);
    if (table == NULL)
        goto done;
    if (!PyDict_CheckExact(table)) {
        rc = 0;
        goto done;
    }
    key = PyLong_FromUnsignedLong(ssrc);
    if (key == NULL)
        goto done;
    stream = PyDict_GetItemWithError(table, key);
    if (stream == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;  /* RTX or unknown: the Python path */
        goto done;
    }
    Py_INCREF(stream);
    Slots *ss = &self->stream_slots;
    if (Py_TYPE(stream) != ss->type &&
        resolve_slots(ss, Py_TYPE(stream), NAMES(stream_names)) < 0) {
        ss->type = NULL;
        rc = 0;  /* not a Stream with these slots: the Python path */
        goto done;
    }
    /* -- the checks: nothing is changed before all of them pass -- */
    PyObject *o = SLOT(stream, ss, A_PAUSED);
    if (o != Py_False) {
        rc = 0;  /* paused (or unset): the Python path counts the drop */
        goto done;
    }
    o = SLOT(stream, ss, A_PT_MAP);
    int pt;
    if (o != NULL && PyByteArray_Check(o) && PyByteArray_GET_SIZE(o) >= 128)
        pt = (unsigned char)PyByteArray_AS_STRING(o)[b1 & 0x7F];
    else if (o != NULL && PyBytes_Check(o) && PyBytes_GET_SIZE(o) >= 128)
        pt = (unsigned char)PyBytes_AS_STRING(o)[b1 & 0x7F];
    else
        pt = 0xFF;
    if (pt == 0xFF) {
        rc = 0;  /* unmapped: the Python path counts the drop */
        goto done;
    }
    /* A header extension: its ids are remapped (stream.ext_map), and an audio stream's
     * level (stream.level_id) read after the remap, as receive_python does. */
    const unsigned char *ext_map = NULL;
    long level_id = 0;
    long long level_sum = 0, level_count = 0;
    if (b0 & 0x10) {
        o = SLOT(stream, ss, A_EXT_MAP);
        if (o == NULL) {
            rc = 0;
            goto done;
        }
        if (o != Py_None) {
            if (PyBytes_CheckExact(o) && PyBytes_GET_SIZE(o) == 256)
                ext_map = (const unsigned char *)PyBytes_AS_STRING(o);
            else if (PyByteArray_CheckExact(o) && PyByteArray_GET_SIZE(o) == 256)
                ext_map = (const unsigned char *)PyByteArray_AS_STRING(o);
            PyObject *lv = SLOT(stream, ss, A_LEVEL_ID);
            if (ext_map == NULL || lv == NULL || !PyLong_CheckExact(lv) ||
                ext_ids(p, hlen, ext_map, 0) < 0) {
                rc = 0;  /* a malformed block (or odd fields): the Python path */
                goto done;
            }
            level_id = PyLong_AsLong(lv);
            if (level_id < 0 || level_id > 255) {
                PyErr_Clear();
                rc = 0;
                goto done;
            }
            if (level_id) {  /* an audio stream's level (room.audioLevels): read below */
                level_sum = slot_ll(stream, ss, A_LEVEL_SUM, &err);
                level_count = slot_ll(stream, ss, A_LEVEL_COUNT, &err);
                if (err) {
                    rc = 0;
                    goto done;
                }
            }
        }
    }
    PyObject *nack = SLOT(stream, ss, A_NACK);
    Slots *ns = &self->nack_slots;
    if (nack == NULL) {
        rc = 0;
        goto done;
    }
    if (nack != Py_None) {
        if (Py_TYPE(nack) != ns->type && resolve_slots(ns, Py_TYPE(nack), NAMES(nack_names)) < 0) {
            ns->type = NULL;
            rc = 0;
            goto done;
        }
        long long expected = slot_ll(nack, ns, A_EXPECTED, &err);
        o = SLOT(nack, ns, A_PENDING);
        if (err || expected != (long long)seq || o == NULL || !PyDict_CheckExact(o)) {
            rc = 0;  /* out of order: the NACK generator's work */
            goto done;
        }
        if (PyDict_GET_SIZE(o) != 0) {
            /* Packets missing, this one in order: forward.py's _nack_check does no more than
             * advance `expected` (and note a frame end) unless the packet may begin a key
             * frame, i.e. follows a frame end; that one goes to Python. Without this, every
             * packet of a stream took the Python path for as long as one lost packet stays
             * pending (MAX_NACKS retries, 0.7 s). */
            long long frame_end = slot_ll(nack, ns, A_FRAME_END, &err);
            if (err || frame_end == (long long)((seq - 1) & 0xFFFF)) {
                rc = 0;
                goto done;
            }
            nack_mid_frame = 1;
        }
    }
    o = SLOT(stream, ss, A_WAITING);
    if (o == NULL || !PyList_CheckExact(o) || PyList_GET_SIZE(o) != 0) {
        rc = 0;  /* consumers wait for a start point here */
        goto done;
    }
    PyObject *pipes = SLOT(stream, ss, A_PIPES);
    if (pipes == NULL || !PyTuple_CheckExact(pipes) ||
        (PyTuple_GET_SIZE(pipes) != 0 && !pipe_ready(self, pipes, n))) {
        rc = 0;  /* piped, and not all to PipeBatch with room (a host leg...): Python */
        goto done;
    }
    long long packets = slot_ll(stream, ss, A_PACKETS, &err);
    long long max_seq = slot_ll(stream, ss, A_MAX_SEQ, &err);
    long long clock_rate = slot_ll(stream, ss, A_CLOCK_RATE, &err);
    long long last_transit = slot_ll(stream, ss, A_TRANSIT, &err);
    long long octets = slot_ll(stream, ss, A_OCTETS, &err);
    long long cycles = slot_ll(stream, ss, A_CYCLES, &err);
    PyObject *jo = SLOT(stream, ss, A_JITTER);
    if (err || jo == NULL || !PyFloat_CheckExact(jo) || SLOT(stream, ss, A_MAX_TS) == NULL ||
        SLOT(stream, ss, A_MAX_AT) == NULL || SLOT(stream, ss, A_BASE_SEQ) == NULL) {
        rc = 0;
        goto done;
    }
    int newer = ((seq - (unsigned long)max_seq) & 0xFFFF) < 0x8000;
    if (packets != 0 && !newer) {
        rc = 0;  /* late (a repair, or reordered): the Python path picks its consumers */
        goto done;
    }
    PyObject *store = SLOT(stream, ss, A_STORE);
    if (store == NULL || (store != Py_None && !(PyList_CheckExact(store) &&
                                                 PyList_GET_SIZE(store) > (Py_ssize_t)self->store_mask))) {
        rc = 0;
        goto done;
    }
    PyObject *fan = SLOT(stream, ss, A_FAN);
    if (fan == NULL || !PyTuple_CheckExact(fan)) {
        rc = 0;
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fan); i++) {
        PyObject *c = PyTuple_GET_ITEM(fan, i);
        if (!PyObject_TypeCheck(c, &RewriteCoreType) || ((RewriteCore *)c)->fd < 0 ||
            (((RewriteCore *)c)->nq && ((RewriteCore *)c)->owner != (void *)self->fo)) {
            rc = 0;  /* an ICE-TCP consumer (send_one), or not this worker's: Python */
            goto done;
        }
    }
    Slots *fs = &self->fwd_slots;
    long long rtp_in = slot_ll(self->fwd, fs, A_RTP_IN, &err);
    long long rtp_out = slot_ll(self->fwd, fs, A_RTP_OUT, &err);
    long long send_errors = slot_ll(self->fwd, fs, A_SEND_ERRORS, &err);
    if (err) {
        rc = 0;
        goto done;
    }
    /* -- the common case: from here on the packet is forwarded -- */
    Py_INCREF(fan);  /* held across the fan-out's callbacks (resync) */
    int bad = 0;
    if (ext_map != NULL) {
        ext_ids(p, hlen, ext_map, 1);
        if (level_id) {
            int level = audio_level(p, (int)level_id);
            if (level >= 0) {
                bad |= slot_set(stream, ss, A_LEVEL_SUM, PyLong_FromLongLong(level_sum + level));
                bad |= slot_set(stream, ss, A_LEVEL_COUNT, PyLong_FromLongLong(level_count + 1));
            }
        }
    }
    p[1] = (unsigned char)((b1 & 0x80) | pt);
    struct timespec tsp;
    clock_gettime(CLOCK_MONOTONIC, &tsp);
    /* time.monotonic(): the nanoseconds as one integer, divided as a double (_PyTime). */
    long long ns_now = (long long)tsp.tv_sec * 1000000000LL + tsp.tv_nsec;
    double now = (double)ns_now / 1e9;
    long long transit = (long long)(now * (double)clock_rate) - (long long)ts;
    if (packets == 0)
        bad |= slot_set(stream, ss, A_BASE_SEQ, PyLong_FromUnsignedLong(seq));
    else {
        /* newer (or the same): the Python path's in-window branch */
        if ((long long)seq < max_seq)
            bad |= slot_set(stream, ss, A_CYCLES, PyLong_FromLongLong(cycles + 0x10000));
        long long d = transit - last_transit;
        if (-0x80000000LL < d && d < 0x80000000LL) {
            double jitter = PyFloat_AS_DOUBLE(jo);
            jitter += ((double)(d >= 0 ? d : -d) - jitter) * 0.0625;
            bad |= slot_set(stream, ss, A_JITTER, PyFloat_FromDouble(jitter));
        }
    }
    bad |= slot_set(stream, ss, A_MAX_SEQ, PyLong_FromUnsignedLong(seq));
    bad |= slot_set(stream, ss, A_MAX_TS, PyLong_FromUnsignedLong(ts));
    bad |= slot_set(stream, ss, A_MAX_AT, PyFloat_FromDouble(now));
    bad |= slot_set(stream, ss, A_TRANSIT, PyLong_FromLongLong(transit));
    bad |= slot_set(stream, ss, A_PACKETS, PyLong_FromLongLong(packets + 1));
    bad |= slot_set(stream, ss, A_OCTETS, PyLong_FromLongLong(octets + n));
    bad |= slot_set(self->fwd, fs, A_RTP_IN, PyLong_FromLongLong(rtp_in + 1));
    if (nack != Py_None) {
        bad |= slot_set(nack, ns, A_EXPECTED, PyLong_FromUnsignedLong((seq + 1) & 0xFFFF));
        if (nack_mid_frame && (b1 & 0x80))  /* the marker: this frame's last packet */
            bad |= slot_set(nack, ns, A_FRAME_END, PyLong_FromUnsignedLong(seq));
    }
    if (store != Py_None) {
        PyObject **entry = &PyList_GET_ITEM(store, (Py_ssize_t)(seq & self->store_mask));
        PyObject *old = *entry;
        if (old != NULL && PyBytes_CheckExact(old) && Py_REFCNT(old) == 1 && PyBytes_GET_SIZE(old) == n) {
            /* The slot's bytes of 1,024 packets ago, held by nothing but this list, of the
             * same size (a video stream's packets mostly are): refilled in place, which
             * nobody can observe, instead of a malloc and a free of ~1.2 KB per packet
             * (_int_free alone was 0.23 us of a 1 -> 1 packet's 9: docs/benchmarks.md). */
            memcpy(PyBytes_AS_STRING(old), p, (size_t)n);
            /* Forget a cached hash of the old bytes. ob_shash is deprecated since 3.11 (a
             * bytes object is meant to be immutable) but still there in 3.11-3.13; this is
             * the one place that writes it, on an object nothing else holds. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
            ((PyBytesObject *)old)->ob_shash = -1;
#pragma GCC diagnostic pop
        } else {
            PyObject *copy = PyBytes_FromStringAndSize((const char *)p, n);
            if (copy == NULL)
                bad = -1;
            else
                Py_XSETREF(*entry, copy);
        }
    }
    if (!bad && PyTuple_GET_SIZE(pipes) != 0) {  /* after the store, before the fan: Python's order */
        Py_INCREF(pipes);
        bad |= pipe_append(self, pipes, p, n);
        Py_DECREF(pipes);
    }
    if (bad) {
        Py_DECREF(fan);
        goto done;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(fan);
    if (count) {
        seqo = PyLong_FromUnsignedLong(seq);
        tso = PyLong_FromUnsignedLong(ts);
        no = PyLong_FromSsize_t(n);
        long sent = -1;
        if (seqo != NULL && tso != NULL && no != NULL) {
            PyObject *args[6] = {fan, buf, NULL, seqo, tso, no};
            sent = fan_core(self->fo, args, seq, ts, n);
        }
        Py_DECREF(fan);
        if (sent < 0)
            goto done;
        /* Re-read: a resync callback may have run Python code (never these counters). */
        rtp_out = slot_ll(self->fwd, fs, A_RTP_OUT, &err);
        send_errors = slot_ll(self->fwd, fs, A_SEND_ERRORS, &err);
        if (err) {
            PyErr_SetString(PyExc_TypeError, "forwarder.rtp_out/send_errors are not ints");
            goto done;
        }
        if (slot_set(self->fwd, fs, A_RTP_OUT, PyLong_FromLongLong(rtp_out + sent)) < 0)
            goto done;
        if (sent != count &&
            slot_set(self->fwd, fs, A_SEND_ERRORS, PyLong_FromLongLong(send_errors + count - sent)) < 0)
            goto done;
    } else
        Py_DECREF(fan);
    rc = 1;
done:
    Py_XDECREF(table);
    Py_XDECREF(key);
    Py_XDECREF(stream);
    Py_XDECREF(seqo);
    Py_XDECREF(tso);
    Py_XDECREF(no);
    return rc;
}

PyDoc_STRVAR(rx_receive_doc,
"receive(source, n) -> None\n\n"
"Forwarder.receive for the packet in forwarder.buf[:n] from `source`: the common case in C,\n"
"anything else through `fallback(source, n)` (the Python path).");

static PyObject *rx_receive(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "receive() takes (source, n)");
        return NULL;
    }
    if (self->fo == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised (or was cleared)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    int r = rx_fast(self, args[0], n);
    if (r < 0)
        return NULL;
    if (r > 0) {
        self->fast++;
        Py_RETURN_NONE;
    }
    self->slow++;
    return PyObject_Vectorcall(self->fallback, args, 2, NULL);
}

/* fn(n), or fn(source, n) when source is not NULL: a new reference, NULL on error. */
static PyObject *call_n(PyObject *fn, PyObject *source, Py_ssize_t n) {
    PyObject *no = PyLong_FromSsize_t(n);
    if (no == NULL)
        return NULL;
    PyObject *r;
    if (source != NULL) {
        PyObject *a[2] = {source, no};
        r = PyObject_Vectorcall(fn, a, 2, NULL);
    } else
        r = PyObject_Vectorcall(fn, &no, 1, NULL);
    Py_DECREF(no);
    return r;
}

/* The packet in forwarder.buf[:n] from `source`: the native receive, or else the fallback
 * (Forwarder.receive_python), counted in fast / slow as receive() counts; *python_ran := 1
 * when the fallback ran. 0, or -1 with an exception. */
static int rx_take(Receiver *self, PyObject *source, Py_ssize_t n, int *python_ran) {
    int fast = rx_fast(self, source, n);
    if (fast < 0)
        return -1;
    if (fast) {
        self->fast++;
        return 0;
    }
    self->slow++;
    *python_ran = 1;
    PyObject *r = call_n(self->fallback, source, n);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* An int argument as an fd number (-1 with an exception when it is not an int that fits). */
static int as_fd(PyObject *o) {
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "fd must be an open file descriptor");
        return -1;
    }
    return (int)v;
}

/* One recvmmsg of up to nslots datagrams: how many (0: none waiting), -1 on another error. */
static int rx_recv(Receiver *self, int fd) {
    int k = recvmmsg(fd, self->rmsgs, (unsigned int)self->nslots, MSG_DONTWAIT, NULL);
    if (k < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    return k;
}

/* The inbound srtp_t of a secure source (source.srtp.rx_address, workers/transport/srtp.py)
 * into *ctx, the SrtpContext held in *holder while it is used; NULL when the source has no
 * SRTP session yet, or this Receiver no srtp_unprotect: its datagrams then go to the
 * handler, which does what it does without the native core. Read again after each Python
 * call of a drain (a DTLS record or a close may have changed it). */
static int rx_srtp(Receiver *self, PyObject *source, PyObject **holder, void **ctx) {
    Py_CLEAR(*holder);
    *ctx = NULL;
    if (self->unprotect == NULL)
        return 0;
    PyObject *srtp = PyObject_GetAttr(source, attr[A_SRTP]);
    if (srtp == NULL)
        return -1;
    if (srtp == Py_None) {
        Py_DECREF(srtp);
        return 0;
    }
    PyObject *a = PyObject_GetAttr(srtp, attr[A_RX_ADDRESS]);
    if (a == NULL) {
        Py_DECREF(srtp);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(a);
    Py_DECREF(a);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        Py_DECREF(srtp);
        return -1;
    }
    *holder = srtp;
    *ctx = (void *)(uintptr_t)v;
    return 0;
}

/* obj.<name> += k (a Python counter bumped rarely, or once per drain: through the attribute);
 * 0, or -1 with an exception. */
static int attr_add(PyObject *obj, PyObject *name, long long k) {
    if (k == 0)
        return 0;
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    PyObject *d = PyLong_FromLongLong(k);
    PyObject *w = d != NULL ? PyNumber_Add(v, d) : NULL;
    Py_XDECREF(d);
    Py_DECREF(v);
    if (w == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, w);
    Py_DECREF(w);
    return r;
}

PyDoc_STRVAR(rx_drain_doc,
"drain(source, secure, fd, handler) -> (datagrams, octets, errors)\n\n"
"One drain of the connected socket fd: one recvmmsg of up to `drain` datagrams, each copied\n"
"into forwarder.buf and taken in order. Not secure (a plain transport): the common case\n"
"forwarded in C, any other datagram to handler(n), which must do what forwarder.receive(\n"
"source, n) does for RTP. Secure (WebRTC): an SRTP packet is unprotected in place with\n"
"source.srtp's inbound session (a failure counted in source.srtp_errors), then forwarded\n"
"in C or by the fallback (Forwarder.receive_python); SRTCP, STUN, DTLS, anything before\n"
"the SRTP keys go to handler(n). errors: failed receives and datagrams larger than a slot.\n"
"The caller runs forwarder.after_drain() after it, as after any drain.");

/* One drain of fd for `source` (rx_drain's work, shared with the native loop's readers,
 * workers/_native_loop.c): counts into acc[0..2] (datagrams, octets, errors) as it goes, so
 * a drain stopped by an exception still counts what it took; *python_ran := 1 when a Python
 * handler or the fallback was called. 0, or -1 with an exception set. */
static int rx_drain_fd(Receiver *self, PyObject *source, int secure, int fd, PyObject *handler,
                       long long *acc, int *python_ran) {
    if (self->fo == NULL || self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised (or was cleared)");
        return -1;
    }
    if (self->draining) {  /* one set of slots: a handler must not start another drain */
        PyErr_SetString(PyExc_RuntimeError, "drain() called from inside a drain's handler");
        return -1;
    }
    /* As udp.py's Python drain: an error (an ICMP of an earlier send: ECONNREFUSED...) is
     * consumed by the failed call; counted, and tried again, four calls at most. */
    int k = rx_recv(self, fd), tries = 1;
    while (k < 0 && tries < 4) {
        acc[2]++;
        k = rx_recv(self, fd);
        tries++;
    }
    PyObject *holder = NULL;
    void *ctx = NULL;
    self->draining = 1;
    if (secure && rx_srtp(self, source, &holder, &ctx) < 0)
        goto error;
    for (int i = 0; i < k; i++) {
        if (self->rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            acc[2]++;  /* larger than a slot: not a media packet we take */
            continue;
        }
        Py_ssize_t n = (Py_ssize_t)self->rmsgs[i].msg_len;
        PyObject *buf = self->buf;
        if (buf == NULL || n > PyByteArray_GET_SIZE(buf)) {
            acc[2]++;
            continue;
        }
        unsigned char *p = (unsigned char *)PyByteArray_AS_STRING(buf);
        memcpy(p, self->slots + (size_t)RECV_SLOT * i, (size_t)n);
        acc[0]++;
        acc[1] += n;
        PyObject *r;
        if (!secure) {
            int fast = rx_fast(self, source, n);
            if (fast < 0)
                goto error;
            if (fast) {
                self->fast++;
                continue;
            }
            *python_ran = 1;
            r = call_n(handler, NULL, n);  /* handler = forwarder.receive: counts it slow */
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            continue;
        }
        if (ctx != NULL && p[0] >= 128 && p[0] <= 191 && !(n >= 8 && p[1] >= 192 && p[1] <= 223)) {
            /* SRTP from the selected tuple: what WebRtcTransport._on_selected does with it */
            int len = (int)n;
            if (n < 12 || n > MAX_SRTP || self->unprotect(ctx, p, &len) != 0) {
                if (attr_add(source, attr[A_SRTP_ERRORS], 1) < 0)  /* bad tag, replay, size */
                    goto error;
                continue;
            }
            n = len;
            self->unprotected++;
            int ran = 0;
            if (rx_take(self, source, n, &ran) < 0)
                goto error;
            if (!ran)
                continue;
            *python_ran = 1;
        } else {
            *python_ran = 1;
            r = call_n(handler, NULL, n);  /* SRTCP, STUN, DTLS, media before the keys... */
            if (r == NULL)
                goto error;
            Py_DECREF(r);
        }
        if (rx_srtp(self, source, &holder, &ctx) < 0)  /* Python ran: the keys may have changed */
            goto error;
    }
    self->draining = 0;
    Py_XDECREF(holder);
    return 0;
error:
    self->draining = 0;
    Py_XDECREF(holder);
    return -1;
}

static PyObject *rx_drain(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "drain() takes (source, secure, fd, handler)");
        return NULL;
    }
    PyObject *source = args[0], *handler = args[3];
    int secure = PyObject_IsTrue(args[1]);
    if (secure < 0)
        return NULL;
    int fd = as_fd(args[2]);
    if (fd < 0)
        return NULL;
    long long acc[3] = {0, 0, 0};
    int python_ran = 0;
    if (rx_drain_fd(self, source, secure, fd, handler, acc, &python_ran) < 0)
        return NULL;
    return Py_BuildValue("(LLL)", acc[0], acc[1], acc[2]);
}

static PyObject *rx_dump(Receiver *self, PyObject *unused) {
    /* nativeRx / pythonRx: packets each receive path took; nativeSrtp: SRTP packets the
     * drain unprotected (the rest of a WebRTC transport's went through pylibsrtp). */
    return Py_BuildValue("{s:K,s:K,s:K}", "nativeRx", self->fast, "pythonRx", self->slow,
                         "nativeSrtp", self->unprotected);
}

static PyMethodDef rx_methods[] = {
    {"receive", (PyCFunction)(void (*)(void))rx_receive, METH_FASTCALL, rx_receive_doc},
    {"drain", (PyCFunction)(void (*)(void))rx_drain, METH_FASTCALL, rx_drain_doc},
    {"dump", (PyCFunction)rx_dump, METH_NOARGS, "Packets taken by each path."},
    {"set_pipe", (PyCFunction)rx_set_pipe, METH_VARARGS,
     "set_pipe(batch_type, max_message): append piped packets natively (workers/_native_pipe.c)."},
    {"pipe_drain", (PyCFunction)(void (*)(void))rx_pipe_drain, METH_FASTCALL,
     "pipe_drain(hub, fd, rbuf, lookup, on_discontinuity, limit) -> status: PipeHub._drain in C "
     "(workers/_native_pipe.c)."},
    {NULL},
};

static PyMemberDef rx_members[] = {
    {"fast", T_ULONGLONG, offsetof(Receiver, fast), READONLY, "packets the native path took"},
    {"slow", T_ULONGLONG, offsetof(Receiver, slow), READONLY, "packets handed to fallback"},
    {"unprotected", T_ULONGLONG, offsetof(Receiver, unprotected), READONLY,
     "SRTP packets drain() unprotected"},
    {NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tureen.workers._native.Receiver",
    .tp_doc = "Receiver(fanout, forwarder, fallback, store_mask): Forwarder.receive's common "
              "case in C.",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)rx_traverse,
    .tp_clear = (inquiry)rx_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rx_init,
    .tp_dealloc = (destructor)rx_dealloc,
    .tp_methods = rx_methods,
    .tp_members = rx_members,
};
