/* tureen.workers._native, part three: the cross-worker pipe's packets in C, at both ends.
 *
 * Not a translation unit of its own: workers/_native.c includes this file after
 * workers/_native_rx.c (it uses the Receiver and its rx_fast; rx_fast calls pipe_ready and
 * pipe_append, declared before it), so they share the file-static types and helpers. setup.py
 * lists it in `depends` so that a change rebuilds the module. The framing is pipe.py's
 * (workers/transport/pipe.py, its docstring): a datagram is a 4-byte big-endian producerId
 * and records, each a 2-byte big-endian length and the packet; the header alone is a
 * discontinuity mark.
 *
 * The origin (rx_fast's pipe case). A stream whose `pipes` are all PipeBatch (the type given
 * to Receiver.set_pipe) takes the native receive like any other: after the ingest rewrite the
 * packet is appended to each batch's `out` (a bytearray) as a record, `count` goes up, and a
 * batch that got its first packet is listed in forwarder.dirty; exactly what
 * Forwarder.receive_python does, so PipeBatch.flush (after_drain, in Python) sends and splits
 * the same bytes; after a drain of the native loop, pipe_flush_dirty below sends them in C
 * (what it cannot, it leaves to that flush). Anything else goes to the Python path, unchanged: a LegOut (a host leg) in
 * the tuple, a batch that would grow past one datagram (max_message: the flush splits it
 * there), a bytearray someone holds a view of (it could not grow).
 *
 * The destination (Receiver.pipe_drain, for PipeHub._drain). Up to `limit` datagrams of one
 * origin's connection, each read with one recv into the hub's buffer and parsed here: the
 * producer looked up by the hub's `lookup`, each record bounds-checked (a torn record or a
 * short datagram counted in hub.bad_messages and never read past), copied into forwarder.buf
 * and given to the native receive (rx_fast; any packet it does not take goes to the fallback,
 * Forwarder.receive_python, at once: the order is the datagram's). An unknown or not piped
 * producer counts forwarder.pipe_unknown_producer, the header alone calls on_discontinuity
 * (producer), records count forwarder.pipe_packets_in: the same counters, at the same points,
 * as PipeHub._on_message (tests/unit/test_pipe_native.py runs both on the same datagrams). */

#define PIPE_HEADER 4  /* pipe._HEADER: producerId */
#define PIPE_RECORD 2  /* pipe._RECORD: the length before each packet */

static PyObject *pipe_name_dirty, *pipe_name_piped, *pipe_name_bad, *pipe_name_in,
    *pipe_name_unknown, *pipe_name_link, *pipe_name_sock, *pipe_name_pk_out,
    *pipe_name_msg_out, *pipe_name_dropped;

/* The interned attribute names this file uses (module init). */
static int pipe_init_names(void) {
    return (pipe_name_dirty = PyUnicode_InternFromString("dirty")) != NULL &&
                   (pipe_name_piped = PyUnicode_InternFromString("piped")) != NULL &&
                   (pipe_name_bad = PyUnicode_InternFromString("bad_messages")) != NULL &&
                   (pipe_name_in = PyUnicode_InternFromString("pipe_packets_in")) != NULL &&
                   (pipe_name_unknown = PyUnicode_InternFromString("pipe_unknown_producer")) != NULL &&
                   (pipe_name_link = PyUnicode_InternFromString("link")) != NULL &&
                   (pipe_name_sock = PyUnicode_InternFromString("sock")) != NULL &&
                   (pipe_name_pk_out = PyUnicode_InternFromString("pipe_packets_out")) != NULL &&
                   (pipe_name_msg_out = PyUnicode_InternFromString("pipe_messages_out")) != NULL &&
                   (pipe_name_dropped = PyUnicode_InternFromString("pipe_dropped")) != NULL
               ? 0
               : -1;
}

/* The offset of __slots__ member `name` of tp (a writable object slot), or -1. */
static Py_ssize_t pipe_slot_offset(PyTypeObject *tp, const char *name) {
    PyObject *key = PyUnicode_InternFromString(name);
    if (key == NULL)
        return -1;
    PyObject *d = _PyType_Lookup(tp, key);  /* borrowed */
    Py_DECREF(key);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
        return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY))
        return -1;
    return m->offset;
}

#define PIPE_SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* set_pipe(batch_type, max_message) -> None
 *
 * Take packets of streams with pipes natively: a stream whose pipes are all of batch_type
 * (pipe.PipeBatch: `out` a bytearray, `count` an int, in __slots__) gets each packet appended
 * in C while a batch stays within max_message bytes (pipe.MAX_MESSAGE). Without this call
 * every piped packet goes to the fallback. */

static PyObject *rx_set_pipe(Receiver *self, PyObject *args) {
    PyObject *tp;
    Py_ssize_t max;
    if (!PyArg_ParseTuple(args, "O!n", &PyType_Type, &tp, &max))
        return NULL;
    if (max < PIPE_HEADER + PIPE_RECORD + 12) {
        PyErr_SetString(PyExc_ValueError, "max_message must hold the header and one packet");
        return NULL;
    }
    Py_ssize_t out = pipe_slot_offset((PyTypeObject *)tp, "out");
    Py_ssize_t count = pipe_slot_offset((PyTypeObject *)tp, "count");
    if (out < 0 || count < 0) {
        PyErr_SetString(PyExc_TypeError, "batch_type must keep `out` and `count` in __slots__");
        return NULL;
    }
    Py_INCREF(tp);
    Py_XSETREF(self->pipe_type, tp);
    self->pipe_out = out;
    self->pipe_count = count;
    self->pipe_max = max;
    Py_RETURN_NONE;
}

/* 1: every pipe of the (non-empty) tuple takes a record of n bytes natively; 0: the Python
 * path. Changes nothing. */
static int pipe_ready(Receiver *self, PyObject *pipes, Py_ssize_t n) {
    PyObject *tp = self->pipe_type;
    if (tp == NULL || n > 0xFFFF)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pipes); i++) {
        PyObject *b = PyTuple_GET_ITEM(pipes, i);
        if ((PyObject *)Py_TYPE(b) != tp)
            return 0;  /* a host leg's LegOut (one datagram per packet): Python */
        PyObject *out = PIPE_SLOT(b, self->pipe_out);
        PyObject *count = PIPE_SLOT(b, self->pipe_count);
        if (out == NULL || !PyByteArray_CheckExact(out) || count == NULL || !PyLong_CheckExact(count))
            return 0;
        if (((PyByteArrayObject *)out)->ob_exports > 0)
            return 0;  /* a view holds it: it cannot grow (Python raises BufferError) */
        if (PyByteArray_GET_SIZE(out) + PIPE_RECORD + n > self->pipe_max)
            return 0;  /* past one datagram: Python appends, the flush splits */
    }
    return 1;
}

/* Each batch of `pipes` (pipe_ready said yes): the record of p[:n] appended, count + 1, and
 * listed in forwarder.dirty on its first packet of the drain. 0, or -1 with an exception. */
static int pipe_append(Receiver *self, PyObject *pipes, const unsigned char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pipes); i++) {
        PyObject *b = PyTuple_GET_ITEM(pipes, i);
        PyObject *out = PIPE_SLOT(b, self->pipe_out);
        long long count = PyLong_AsLongLong(PIPE_SLOT(b, self->pipe_count));
        if (count == -1 && PyErr_Occurred())
            return -1;
        if (count == 0) {
            PyObject *dirty = PyObject_GetAttr(self->fwd, pipe_name_dirty);
            if (dirty == NULL)
                return -1;
            int r = PyList_CheckExact(dirty) ? PyList_Append(dirty, b) : -1;
            if (r < 0 && !PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "forwarder.dirty must be a list");
            Py_DECREF(dirty);
            if (r < 0)
                return -1;
        }
        Py_ssize_t at = PyByteArray_GET_SIZE(out);
        if (PyByteArray_Resize(out, at + PIPE_RECORD + n) < 0)
            return -1;
        unsigned char *o = (unsigned char *)PyByteArray_AS_STRING(out) + at;
        o[0] = (unsigned char)(n >> 8);
        o[1] = (unsigned char)n;
        memcpy(o + PIPE_RECORD, p, (size_t)n);
        PyObject *c = PyLong_FromLongLong(count + 1);
        if (c == NULL)
            return -1;
        Py_XSETREF(PIPE_SLOT(b, self->pipe_count), c);
    }
    return 0;
}

/* One datagram of n bytes at d (n >= 0, within the buffer): what PipeHub._on_message does.
 * Counts into *bad, *unknown and *packets; 0, or -1 with an exception. */
static int pipe_message(Receiver *self, const unsigned char *d, Py_ssize_t n, PyObject *lookup,
                        PyObject *on_discontinuity, long long *bad, long long *unknown,
                        long long *packets, int *python_ran) {
    if (n < PIPE_HEADER) {
        (*bad)++;
        return 0;
    }
    unsigned long pid = ((unsigned long)d[0] << 24) | ((unsigned long)d[1] << 16) |
                        ((unsigned long)d[2] << 8) | d[3];
    PyObject *key = PyLong_FromUnsignedLong(pid);
    if (key == NULL)
        return -1;
    PyObject *producer = PyObject_Vectorcall(lookup, &key, 1, NULL);
    Py_DECREF(key);
    if (producer == NULL)
        return -1;
    int piped = 0;
    if (producer != Py_None) {
        PyObject *v = PyObject_GetAttr(producer, pipe_name_piped);
        if (v == NULL)
            goto error;
        piped = PyObject_IsTrue(v);
        Py_DECREF(v);
        if (piped < 0)
            goto error;
    }
    if (!piped) {
        (*unknown)++;
        Py_DECREF(producer);
        return 0;
    }
    if (n == PIPE_HEADER) {  /* the discontinuity mark */
        *python_ran = 1;
        PyObject *r = PyObject_Vectorcall(on_discontinuity, &producer, 1, NULL);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
        Py_DECREF(producer);
        return 0;
    }
    Py_ssize_t off = PIPE_HEADER;
    long long count = 0;
    while (off < n) {
        if (off + PIPE_RECORD > n) {
            (*bad)++;  /* a length cut by the datagram's end */
            break;
        }
        Py_ssize_t len = ((Py_ssize_t)d[off] << 8) | d[off + 1];
        off += PIPE_RECORD;
        if (off + len > n) {
            (*bad)++;  /* a torn record: never read past the datagram */
            break;
        }
        PyObject *buf = self->buf;
        if (buf == NULL || len > PyByteArray_GET_SIZE(buf)) {
            PyErr_SetString(PyExc_RuntimeError, "forwarder.buf is smaller than a pipe record");
            goto error;
        }
        memcpy(PyByteArray_AS_STRING(buf), d + off, (size_t)len);
        off += len;
        count++;
        if (rx_take(self, producer, len, python_ran) < 0)
            goto error;
    }
    *packets += count;
    Py_DECREF(producer);
    return 0;
error:
    Py_DECREF(producer);
    return -1;
}

/* Up to `limit` datagrams of the connected SEQPACKET socket fd, each read into rbuf (a
 * bytearray, checked by the caller) and taken as PipeHub._on_message does; the counters added
 * to hub.bad_messages, forwarder.pipe_unknown_producer and forwarder.pipe_packets_in (also
 * when a callback raised: Python keeps those of the datagrams before). *status := 0 (drained,
 * or the limit reached), -1 (the origin closed its end) or the errno of a failed receive;
 * *python_ran := 1 when a Python callback ran (the fallback, on_discontinuity; `lookup` is
 * the router's dict.get). 0, or -1 with an exception. The pipe's native reader
 * (_native_loop.c) and rx_pipe_drain share it. */
static int pipe_drain_fd(Receiver *self, PyObject *hub, int fd, PyObject *rbuf, PyObject *lookup,
                         PyObject *on_discontinuity, long limit, long *status, int *python_ran) {
    /* Exported while Python code runs (the fallback, on_discontinuity): it cannot move. */
    Py_buffer view;
    if (PyObject_GetBuffer(rbuf, &view, PyBUF_WRITABLE) < 0)
        return -1;
    unsigned char *d = view.buf;
    Py_ssize_t size = view.len;
    long long bad = 0, unknown = 0, packets = 0;
    int failed = 0;
    *status = 0;
    for (long i = 0; i < limit; i++) {
        ssize_t got = recv(fd, d, (size_t)size, MSG_TRUNC | MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EINTR) {  /* as Python's recv_into (PEP 475): try again */
                i--;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                *status = errno;  /* ECONNRESET: the origin died */
            break;
        }
        if (got == 0) {
            *status = -1;  /* the origin closed its link */
            break;
        }
        if (got > size) {  /* longer than any origin sends: cut, never parsed */
            bad++;
            continue;
        }
        if (pipe_message(self, d, (Py_ssize_t)got, lookup, on_discontinuity, &bad, &unknown,
                         &packets, python_ran) < 0) {
            failed = 1;
            break;
        }
    }
    PyBuffer_Release(&view);
    PyObject *et = NULL, *ev = NULL, *tb = NULL;
    if (failed)
        PyErr_Fetch(&et, &ev, &tb);
    int r = attr_add(hub, pipe_name_bad, bad);
    if (r == 0)
        r = attr_add(self->fwd, pipe_name_unknown, unknown);
    if (r == 0)
        r = attr_add(self->fwd, pipe_name_in, packets);
    if (failed) {
        if (r < 0)
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    return r;
}

/* pipe_drain(hub, fd, rbuf, lookup, on_discontinuity, limit) -> int
 *
 * PipeHub._drain in C: up to `limit` datagrams of the connected SEQPACKET socket fd, each
 * read into rbuf (a bytearray: a longer datagram is cut and counted in hub.bad_messages)
 * and taken as PipeHub._on_message does, the packets through the native receive. Counts
 * hub.bad_messages, forwarder.pipe_unknown_producer and forwarder.pipe_packets_in. Returns
 * 0 (drained, or the limit reached), -1 (the origin closed its end) or the errno of a failed
 * receive; the caller drops the connection on either and runs forwarder.after_drain(). */

static int pipe_check_drain_args(Receiver *self, PyObject *rbuf, PyObject *lookup,
                                 PyObject *on_discontinuity) {
    if (self->fo == NULL || self->fwd == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised (or was cleared)");
        return -1;
    }
    if (!PyByteArray_CheckExact(rbuf) || PyByteArray_GET_SIZE(rbuf) < PIPE_HEADER) {
        PyErr_SetString(PyExc_TypeError, "rbuf must be a bytearray of at least 4 bytes");
        return -1;
    }
    if (!PyCallable_Check(lookup) || !PyCallable_Check(on_discontinuity)) {
        PyErr_SetString(PyExc_TypeError, "lookup and on_discontinuity must be callable");
        return -1;
    }
    return 0;
}

static PyObject *rx_pipe_drain(Receiver *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "pipe_drain() takes (hub, fd, rbuf, lookup, on_discontinuity, limit)");
        return NULL;
    }
    int fd = as_fd(args[1]);
    if (fd < 0)
        return NULL;
    long limit = PyLong_AsLong(args[5]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (pipe_check_drain_args(self, args[2], args[3], args[4]) < 0)
        return NULL;
    long status = 0;
    int py = 0;
    if (pipe_drain_fd(self, args[0], fd, args[2], args[3], args[4], limit, &status, &py) < 0)
        return NULL;
    return PyLong_FromLong(status);
}

/* One batch of forwarder.dirty sent as PipeBatch.flush does, when it can be in C: 1 (sent,
 * or dropped on EAGAIN: counted into *packets / *messages / *dropped, `out` cut back to the
 * header, `count` 0), 0 (left for the Python flush: not a PipeBatch, a link without a socket
 * (it reconnects in Python), a batch past max_message (split there), a held view, a send
 * that failed otherwise (EPIPE, ECONNRESET: PipeLink.send logs, closes and retries later)),
 * -1 with an exception. */
static int pipe_flush_one(Receiver *self, PyObject *b, long long *packets, long long *messages,
                          long long *dropped) {
    if ((PyObject *)Py_TYPE(b) != self->pipe_type)
        return 0;
    PyObject *out = PIPE_SLOT(b, self->pipe_out);
    PyObject *cnt = PIPE_SLOT(b, self->pipe_count);
    if (out == NULL || !PyByteArray_CheckExact(out) || cnt == NULL || !PyLong_CheckExact(cnt))
        return 0;
    Py_ssize_t size = PyByteArray_GET_SIZE(out);
    if (((PyByteArrayObject *)out)->ob_exports > 0 || size > self->pipe_max || size < PIPE_HEADER)
        return 0;
    long long count = PyLong_AsLongLong(cnt);
    if (count == -1 && PyErr_Occurred())
        return -1;
    PyObject *link = PyObject_GetAttr(b, pipe_name_link);
    if (link == NULL)
        return -1;
    PyObject *sock = PyObject_GetAttr(link, pipe_name_sock);
    Py_DECREF(link);
    if (sock == NULL)
        return -1;
    if (sock == Py_None) {
        Py_DECREF(sock);
        return 0;
    }
    int fd = PyObject_AsFileDescriptor(sock);  /* socket.fileno(): C, -1 once closed */
    Py_DECREF(sock);
    if (fd < 0) {
        PyErr_Clear();
        return 0;
    }
    ssize_t r;
    do
        r = send(fd, PyByteArray_AS_STRING(out), (size_t)size, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return 0;
    if (PyByteArray_Resize(out, PIPE_HEADER) < 0)
        return -1;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return -1;
    Py_XSETREF(PIPE_SLOT(b, self->pipe_count), zero);
    if (r < 0) {
        *dropped += count;  /* the destination is not keeping up: its queue is full */
    } else {
        *packets += count;
        *messages += 1;
    }
    return 1;
}

/* The pipe batches of forwarder.dirty flushed in C (the native loop's flush, instead of the
 * Python after_drain): each one pipe_flush_one takes leaves the list; the others stay in it,
 * in order, for the Python flush. Returns 0 (dirty is empty now), 1 (some are left), or -1
 * with an exception (the batches not reached are left). No Python code runs here. */
static int pipe_flush_dirty(Receiver *self, PyObject *dirty) {
    Py_ssize_t n = PyList_GET_SIZE(dirty);
    if (n == 0)
        return 0;
    if (self->pipe_type == NULL || self->fwd == NULL)
        return 1;
    long long packets = 0, messages = 0, dropped = 0;
    Py_ssize_t keep = 0;
    int failed = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(dirty, i);
        int done = failed ? 0 : pipe_flush_one(self, b, &packets, &messages, &dropped);
        if (done < 0) {
            failed = 1;
            done = 0;
        }
        if (!done) {  /* kept: moved down over the ones taken (a borrowed slot swap) */
            if (keep != i) {
                PyObject *k = PyList_GET_ITEM(dirty, keep);
                PyList_SET_ITEM(dirty, keep, b);
                PyList_SET_ITEM(dirty, i, k);
            }
            keep++;
        }
    }
    PyObject *et = NULL, *ev = NULL, *tb = NULL;
    if (failed)
        PyErr_Fetch(&et, &ev, &tb);
    int r = PyList_SetSlice(dirty, keep, n, NULL);
    if (r == 0)
        r = attr_add(self->fwd, pipe_name_pk_out, packets);
    if (r == 0)
        r = attr_add(self->fwd, pipe_name_msg_out, messages);
    if (r == 0)
        r = attr_add(self->fwd, pipe_name_dropped, dropped);
    if (failed) {
        if (r < 0)
            PyErr_Clear();
        PyErr_Restore(et, ev, tb);
        return -1;
    }
    if (r < 0)
        return -1;
    return keep > 0 ? 1 : 0;
}
