/* NativeLoop: the worker's event loop wait with the common drain in C (issue 17, round three).
 * #included by _native.c after _native_rx.c (one translation unit: Receiver, rx_drain_fd,
 * FanOut and fanout_flush_now are file-static there).
 *
 * workers/native_loop.py's NativeSelector (a selectors.EpollSelector for asyncio) waits with
 * NativeLoop.select(timeout) on its epoll fd. Every fd asyncio registers stays Python's; the
 * connected media sockets that have a native drain (udp.py) are added here instead
 * (NativeLoop.add): when epoll reports one of them, C runs what udp.py's _drain_connected
 * and Forwarder.after_drain did, with no Python frame and no asyncio Handle:
 *
 *   Receiver drain (recvmmsg, SRTP unprotect, the common receive, the rest to the handler in
 *   order), the reader's counters, then the FanOut's flush (failed copies taken back off
 *   forwarder.rtp_out onto send_errors, as after_drain does).
 *
 * The pipe's ends too: the flush sends the forwarder's dirty pipe batches in C
 * (pipe_flush_dirty, _native_pipe.c), and an origin's connection accepted by PipeHub is a
 * reader of the pipe kind (add_pipe), drained by pipe_drain_fd; its end (EOF, a failed
 * receive) calls the hub's on_status(status).
 *
 * Whenever Python ran in a drain (a handler, the fallback or on_discontinuity was called, an
 * exception was reported, a connection ended, or a pipe batch the C flush could not send is
 * left in forwarder.dirty) the Python after_drain is called instead of the flush, and select() returns after this batch of events: the Python code may have
 * scheduled callbacks or timers that asyncio must see before it waits again. Otherwise
 * select() keeps waiting until the timeout (asyncio's next timer) or until a fd of Python's
 * is ready, whose (fd, events) it returns as select.epoll.poll does.
 *
 * An exception of a drain (a handler that raised) goes to on_error(exc, reader), which logs
 * it as asyncio logs a callback's; KeyboardInterrupt and SystemExit propagate, as asyncio's
 * Handle lets them. Signals: a signal that interrupts the wait, or arrives while drains run,
 * runs its Python handler here (PyErr_CheckSignals) and asyncio's wakeup fd (a Python fd)
 * makes select() return. A reader removed during a batch (a handler closed its transport)
 * is not drained again: readers are found by fd at each event. */

#include <sys/epoll.h>

typedef struct {
    PyObject_HEAD
    Receiver *rx;
    PyObject *source;
    PyObject *handler;
    PyObject *after_drain;  /* forwarder.after_drain: when Python ran in the drain */
    PyObject *dirty;        /* forwarder.dirty: pipe batches filled (a list) */
    /* a pipe connection's (add_pipe): PipeHub, its rbuf, lookup, on_discontinuity; `handler`
     * is then on_status(status), called when the origin closed or the receive failed */
    PyObject *hub, *rbuf, *lookup, *on_discontinuity;
    long limit;
    int pipe;               /* 1: a pipe connection (pipe_drain_fd), 0: a media socket */
    int secure;
    int fd;
    int active;             /* 0 once removed from its loop */
    unsigned long long datagrams, octets, errors, drains;
} NativeReader;

static int nr_traverse(NativeReader *self, visitproc visit, void *arg) {
    Py_VISIT(self->rx);
    Py_VISIT(self->source);
    Py_VISIT(self->handler);
    Py_VISIT(self->after_drain);
    Py_VISIT(self->dirty);
    Py_VISIT(self->hub);
    Py_VISIT(self->rbuf);
    Py_VISIT(self->lookup);
    Py_VISIT(self->on_discontinuity);
    return 0;
}

static int nr_clear(NativeReader *self) {
    Py_CLEAR(self->rx);
    Py_CLEAR(self->source);
    Py_CLEAR(self->handler);
    Py_CLEAR(self->after_drain);
    Py_CLEAR(self->dirty);
    Py_CLEAR(self->hub);
    Py_CLEAR(self->rbuf);
    Py_CLEAR(self->lookup);
    Py_CLEAR(self->on_discontinuity);
    return 0;
}

static void nr_dealloc(NativeReader *self) {
    PyObject_GC_UnTrack(self);
    nr_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef nr_members[] = {
    {"fd", T_INT, offsetof(NativeReader, fd), READONLY, "the socket drained"},
    {"active", T_BOOL, offsetof(NativeReader, active), READONLY, "still in its loop"},
    {"pipe", T_BOOL, offsetof(NativeReader, pipe), READONLY, "a pipe connection (add_pipe)"},
    {"datagrams", T_ULONGLONG, offsetof(NativeReader, datagrams), READONLY,
     "datagrams taken (udp.py's datagrams_in)"},
    {"octets", T_ULONGLONG, offsetof(NativeReader, octets), READONLY, "their octets"},
    {"errors", T_ULONGLONG, offsetof(NativeReader, errors), READONLY,
     "failed receives and datagrams larger than a slot (udp.py's recv_errors)"},
    {"drains", T_ULONGLONG, offsetof(NativeReader, drains), READONLY, "drains run"},
    {NULL},
};

static PyTypeObject NativeReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tureen.workers._native.NativeReader",
    .tp_doc = "A connected socket drained by a NativeLoop (made by NativeLoop.add).",
    .tp_basicsize = sizeof(NativeReader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)nr_traverse,
    .tp_clear = (inquiry)nr_clear,
    .tp_dealloc = (destructor)nr_dealloc,
    .tp_members = nr_members,
};

typedef struct {
    PyObject_HEAD
    int epfd;                 /* the NativeSelector's select.epoll (it owns the fd) */
    PyObject *on_error;       /* on_error(exc, reader) */
    NativeReader **byfd;      /* the readers, by fd (a strong reference each) */
    int cap;
    int nreaders;
    int maxevents;
    struct epoll_event *events;
} NativeLoop;

static int nl_init(NativeLoop *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"epoll_fd", "on_error", "maxevents", NULL};
    int epfd, maxevents = 256;
    PyObject *on_error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO|i", kwlist, &epfd, &on_error, &maxevents))
        return -1;
    if (self->events != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeLoop is already initialised");
        return -1;
    }
    if (epfd < 0 || maxevents < 1 || maxevents > 65536) {
        PyErr_SetString(PyExc_ValueError, "epoll_fd must be open, maxevents 1..65536");
        return -1;
    }
    if (!PyCallable_Check(on_error)) {
        PyErr_SetString(PyExc_TypeError, "on_error must be callable");
        return -1;
    }
    self->events = PyMem_RawCalloc((size_t)maxevents, sizeof(struct epoll_event));
    if (self->events == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_INCREF(on_error);
    Py_XSETREF(self->on_error, on_error);
    self->epfd = epfd;
    self->maxevents = maxevents;
    return 0;
}

static void nl_drop_all(NativeLoop *self) {
    for (int fd = 0; fd < self->cap; fd++) {
        NativeReader *r = self->byfd[fd];
        if (r != NULL) {
            self->byfd[fd] = NULL;
            r->active = 0;
            Py_DECREF(r);
        }
    }
    self->nreaders = 0;
}

static int nl_traverse(NativeLoop *self, visitproc visit, void *arg) {
    Py_VISIT(self->on_error);
    for (int fd = 0; fd < self->cap; fd++)
        Py_VISIT(self->byfd[fd]);
    return 0;
}

static int nl_clear(NativeLoop *self) {
    Py_CLEAR(self->on_error);
    nl_drop_all(self);
    return 0;
}

static void nl_dealloc(NativeLoop *self) {
    PyObject_GC_UnTrack(self);
    nl_clear(self);
    PyMem_RawFree(self->byfd);
    PyMem_RawFree(self->events);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A new reader of fd (not yet in the loop: nl_register) for rx, with forwarder.dirty (the
 * reference is stolen, also on failure). NULL with an exception (fd already has one). */
static NativeReader *nl_new_reader(NativeLoop *self, int fd, Receiver *rx, PyObject *dirty) {
    if (fd < self->cap && self->byfd[fd] != NULL) {
        Py_DECREF(dirty);
        PyErr_Format(PyExc_ValueError, "fd %d already has a native reader", fd);
        return NULL;
    }
    if (fd >= self->cap) {
        int cap = self->cap ? self->cap : 64;
        while (cap <= fd)
            cap *= 2;
        NativeReader **b = PyMem_RawRealloc(self->byfd, sizeof(NativeReader *) * (size_t)cap);
        if (b == NULL) {
            Py_DECREF(dirty);
            PyErr_NoMemory();
            return NULL;
        }
        memset(b + self->cap, 0, sizeof(NativeReader *) * (size_t)(cap - self->cap));
        self->byfd = b;
        self->cap = cap;
    }
    NativeReader *r = PyObject_GC_New(NativeReader, &NativeReaderType);
    if (r == NULL) {
        Py_DECREF(dirty);
        return NULL;
    }
    Py_INCREF(rx);
    r->rx = rx;
    r->source = r->handler = r->after_drain = NULL;
    r->hub = r->rbuf = r->lookup = r->on_discontinuity = NULL;
    r->dirty = dirty;
    r->limit = 0;
    r->pipe = 0;
    r->secure = 0;
    r->fd = fd;
    r->active = 0;
    r->datagrams = r->octets = r->errors = r->drains = 0;
    PyObject_GC_Track(r);
    return r;
}

/* r into the epoll set and the table (0), or -1 with an exception (r is released). */
static int nl_register(NativeLoop *self, NativeReader *r) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = r->fd;
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, r->fd, &ev) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(r);
        return -1;
    }
    r->active = 1;
    Py_INCREF(r);
    self->byfd[r->fd] = r;
    self->nreaders++;
    return 0;
}

/* forwarder.dirty of rx (a new reference), or NULL with an exception. */
static PyObject *nl_dirty_of(Receiver *rx) {
    if (rx->fwd == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Receiver is not initialised (or was cleared)");
        return NULL;
    }
    PyObject *dirty = PyObject_GetAttrString(rx->fwd, "dirty");
    if (dirty == NULL)
        return NULL;
    if (!PyList_Check(dirty)) {
        Py_DECREF(dirty);
        PyErr_SetString(PyExc_TypeError, "forwarder.dirty must be a list");
        return NULL;
    }
    return dirty;
}

/* add()'s and add_pipe()'s first arguments, (fd, receiver, ...): the receiver (borrowed) with
 * *fd set, or NULL with an exception (the loop closed, a bad fd, not a Receiver). */
static Receiver *nl_head_args(NativeLoop *self, PyObject *const *args, int *fd) {
    if (self->events == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeLoop is not initialised");
        return NULL;
    }
    *fd = as_fd(args[0]);
    if (*fd < 0)
        return NULL;
    if (!PyObject_TypeCheck(args[1], &ReceiverType)) {
        PyErr_SetString(PyExc_TypeError, "receiver must be a Receiver");
        return NULL;
    }
    return (Receiver *)args[1];
}

PyDoc_STRVAR(nl_add_doc,
"add(fd, receiver, source, secure, handler, after_drain) -> NativeReader\n\n"
"Drain the connected socket fd in C when it is readable: receiver.drain(source, secure, fd,\n"
"handler), then the flush (or after_drain() when Python ran). The reader counts datagrams,\n"
"octets and errors. fd must not be registered with the selector already.");

static PyObject *nl_add(NativeLoop *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "add() takes (fd, receiver, source, secure, handler, after_drain)");
        return NULL;
    }
    int fd;
    Receiver *rx = nl_head_args(self, args, &fd);
    if (rx == NULL)
        return NULL;
    int secure = PyObject_IsTrue(args[3]);
    if (secure < 0)
        return NULL;
    if (!PyCallable_Check(args[4]) || !PyCallable_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "handler and after_drain must be callable");
        return NULL;
    }
    PyObject *dirty = nl_dirty_of(rx);
    if (dirty == NULL)
        return NULL;
    NativeReader *r = nl_new_reader(self, fd, rx, dirty);  /* steals dirty */
    if (r == NULL)
        return NULL;
    Py_INCREF(args[2]);
    r->source = args[2];
    Py_INCREF(args[4]);
    r->handler = args[4];
    Py_INCREF(args[5]);
    r->after_drain = args[5];
    r->secure = secure;
    if (nl_register(self, r) < 0)
        return NULL;
    return (PyObject *)r;
}

PyDoc_STRVAR(nl_add_pipe_doc,
"add_pipe(fd, receiver, hub, rbuf, lookup, on_discontinuity, limit, on_status, after_drain)\n"
"-> NativeReader\n\n"
"Drain the pipe connection fd (an origin's, accepted by PipeHub) in C when it is readable:\n"
"receiver.pipe_drain(hub, fd, rbuf, lookup, on_discontinuity, limit), then the flush (or\n"
"after_drain() when Python ran); a status other than 0 (the origin closed: -1, a failed\n"
"receive: its errno) calls on_status(status), which removes the reader.");

static PyObject *nl_add_pipe(NativeLoop *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "add_pipe() takes (fd, receiver, hub, rbuf, lookup, on_discontinuity, "
                        "limit, on_status, after_drain)");
        return NULL;
    }
    int fd;
    Receiver *rx = nl_head_args(self, args, &fd);
    if (rx == NULL)
        return NULL;
    if (pipe_check_drain_args(rx, args[3], args[4], args[5]) < 0)
        return NULL;
    long limit = PyLong_AsLong(args[6]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (limit < 1) {
        PyErr_SetString(PyExc_ValueError, "limit must be at least 1 datagram");
        return NULL;
    }
    if (!PyCallable_Check(args[7]) || !PyCallable_Check(args[8])) {
        PyErr_SetString(PyExc_TypeError, "on_status and after_drain must be callable");
        return NULL;
    }
    PyObject *dirty = nl_dirty_of(rx);
    if (dirty == NULL)
        return NULL;
    NativeReader *r = nl_new_reader(self, fd, rx, dirty);  /* steals dirty */
    if (r == NULL)
        return NULL;
    r->pipe = 1;
    r->limit = limit;
    Py_INCREF(args[2]);
    r->hub = args[2];
    Py_INCREF(args[3]);
    r->rbuf = args[3];
    Py_INCREF(args[4]);
    r->lookup = args[4];
    Py_INCREF(args[5]);
    r->on_discontinuity = args[5];
    Py_INCREF(args[7]);
    r->handler = args[7];
    Py_INCREF(args[8]);
    r->after_drain = args[8];
    if (nl_register(self, r) < 0)
        return NULL;
    return (PyObject *)r;
}

PyDoc_STRVAR(nl_remove_doc,
"remove(fd) -> NativeReader | None\n\n"
"Stop draining fd (call it before closing the socket); its reader, or None when fd had none.");

static PyObject *nl_remove(NativeLoop *self, PyObject *arg) {
    int fd = as_fd(arg);
    if (fd < 0)
        return NULL;
    if (fd >= self->cap || self->byfd[fd] == NULL)
        Py_RETURN_NONE;
    NativeReader *r = self->byfd[fd];
    self->byfd[fd] = NULL;
    self->nreaders--;
    r->active = 0;
    /* EBADF/ENOENT: the fd was closed (and so left the epoll set) already: nothing to undo */
    (void)epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, NULL);
    return (PyObject *)r;  /* the table's reference, now the caller's */
}

/* The exception of a drain: to on_error(exc, reader) (0), or -1 to propagate it (not an
 * Exception: KeyboardInterrupt, SystemExit; or on_error failed). */
static int nl_report(NativeLoop *self, NativeReader *r) {
    if (!PyErr_ExceptionMatches(PyExc_Exception) || self->on_error == NULL)
        return -1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    PyObject *a[2] = {value != NULL ? value : Py_None, (PyObject *)r};
    PyObject *res = PyObject_Vectorcall(self->on_error, a, 2, NULL);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* What Forwarder.after_drain does when no pipe batch is dirty: the FanOut's flush, the
 * copies that failed moved from rtp_out to send_errors. */
static int nl_flush(Receiver *rx) {
    if (rx->fo == NULL || rx->fwd == NULL)
        return 0;
    unsigned long long failed = fanout_flush_now(rx->fo);
    if (failed == 0)
        return 0;
    const Slots *fs = &rx->fwd_slots;
    int err = 0;
    long long out = slot_ll(rx->fwd, fs, A_RTP_OUT, &err);
    long long errors = slot_ll(rx->fwd, fs, A_SEND_ERRORS, &err);
    if (err) {
        PyErr_SetString(PyExc_TypeError, "forwarder.rtp_out / send_errors must be ints");
        return -1;
    }
    if (slot_set(rx->fwd, fs, A_RTP_OUT, PyLong_FromLongLong(out - (long long)failed)) < 0 ||
        slot_set(rx->fwd, fs, A_SEND_ERRORS, PyLong_FromLongLong(errors + (long long)failed)) < 0)
        return -1;
    return 0;
}

/* One readiness of a native reader: the drain, its counters, the flush or after_drain.
 * *python_ran := 1 when Python code ran. 0, or -1 with an exception to propagate. */
static int nl_run(NativeLoop *self, NativeReader *r, int *python_ran) {
    int py = 0;
    int rc;
    long status = 0;
    if (r->pipe) {
        rc = pipe_drain_fd(r->rx, r->hub, r->fd, r->rbuf, r->lookup, r->on_discontinuity,
                           r->limit, &status, &py);
    } else {
        long long acc[3] = {0, 0, 0};
        rc = rx_drain_fd(r->rx, r->source, r->secure, r->fd, r->handler, acc, &py);
        r->datagrams += (unsigned long long)acc[0];
        r->octets += (unsigned long long)acc[1];
        r->errors += (unsigned long long)acc[2];
    }
    r->drains++;
    if (rc < 0) {
        py = 1;
        if (nl_report(self, r) < 0)
            return -1;
    }
    if (status != 0) {  /* the origin's connection ended: PipeHub drops it (and the reader) */
        py = 1;
        PyObject *st = PyLong_FromLong(status);
        PyObject *res = st != NULL ? PyObject_Vectorcall(r->handler, &st, 1, NULL) : NULL;
        Py_XDECREF(st);
        if (res == NULL) {
            if (nl_report(self, r) < 0)
                return -1;
        } else {
            Py_DECREF(res);
        }
    }
    if (!py && PyList_GET_SIZE(r->dirty) > 0) {
        /* PipeBatch.flush in C; what it leaves (a link to reconnect, a batch to split, a
         * failed send) goes to the Python after_drain, which also flushes the fan-out */
        int left = pipe_flush_dirty(r->rx, r->dirty);
        if (left < 0) {
            *python_ran = 1;
            if (nl_report(self, r) < 0)
                return -1;
            left = 1;
        }
        py = left;
    }
    if (py) {
        *python_ran = 1;
        PyObject *res = PyObject_CallNoArgs(r->after_drain);
        if (res == NULL)
            return nl_report(self, r);
        Py_DECREF(res);
        return 0;
    }
    if (nl_flush(r->rx) < 0) {
        *python_ran = 1;
        return nl_report(self, r);
    }
    return 0;
}

static long long nl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

PyDoc_STRVAR(nl_select_doc,
"select(timeout) -> [(fd, events), ...]\n\n"
"Wait up to timeout seconds (< 0: no limit, 0: poll once) for a fd registered with the epoll\n"
"by Python, draining the native readers in C meanwhile; return the Python fds' events (as\n"
"select.epoll.poll), early after a drain that ran Python code, or [] at the timeout.");

static PyObject *nl_select(NativeLoop *self, PyObject *arg) {
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (self->events == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "NativeLoop is not initialised");
        return NULL;
    }
    long long deadline = 0;
    if (timeout > 0) {
        if (timeout > 86400.0 * 365)
            timeout = -1;  /* as good as no limit (and no overflow below) */
        else
            deadline = nl_now_ns() + (long long)(timeout * 1e9);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (;;) {
        int ms;
        if (timeout < 0)
            ms = -1;
        else if (timeout == 0)
            ms = 0;
        else {
            long long left = deadline - nl_now_ns();
            /* epoll_wait's unit is 1 ms: round up, to wait at least the timeout (asyncio's
             * EpollSelector does the same) */
            ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        }
        int n;
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(self->epfd, self->events, self->maxevents, ms);
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR) {  /* a signal: its Python handler, then back to asyncio */
                if (PyErr_CheckSignals() < 0)
                    goto error;
                return out;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            goto error;
        }
        int python_ran = 0;
        for (int i = 0; i < n; i++) {
            int fd = self->events[i].data.fd;
            NativeReader *r = (fd >= 0 && fd < self->cap) ? self->byfd[fd] : NULL;
            if (r != NULL) {
                Py_INCREF(r);  /* a handler may remove it meanwhile */
                int rc = nl_run(self, r, &python_ran);
                Py_DECREF(r);
                if (rc < 0)
                    goto error;
                continue;
            }
            /* Python's fd (or a native one removed earlier in this batch: the selector finds
             * no key for it, or a spurious readiness of a non-blocking socket) */
            PyObject *t = Py_BuildValue("(iI)", fd, (unsigned int)self->events[i].events);
            if (t == NULL || PyList_Append(out, t) < 0) {
                Py_XDECREF(t);
                goto error;
            }
            Py_DECREF(t);
        }
        if (PyList_GET_SIZE(out) > 0 || python_ran || n == 0 || ms == 0)
            return out;
        if (PyErr_CheckSignals() < 0)
            goto error;
    }
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *nl_close(NativeLoop *self, PyObject *unused) {
    nl_drop_all(self);
    /* the selector closes its epoll next: its number may be reused, never touch it again
     * (a later add() or select() fails with EBADF) */
    self->epfd = -1;
    Py_RETURN_NONE;
}

static PyObject *nl_len(NativeLoop *self, PyObject *unused) {
    return PyLong_FromLong(self->nreaders);
}

static PyMethodDef nl_methods[] = {
    {"add", (PyCFunction)(void (*)(void))nl_add, METH_FASTCALL, nl_add_doc},
    {"add_pipe", (PyCFunction)(void (*)(void))nl_add_pipe, METH_FASTCALL, nl_add_pipe_doc},
    {"remove", (PyCFunction)nl_remove, METH_O, nl_remove_doc},
    {"select", (PyCFunction)nl_select, METH_O, nl_select_doc},
    {"close", (PyCFunction)nl_close, METH_NOARGS, "Drop every reader (the selector closes)."},
    {"readers", (PyCFunction)nl_len, METH_NOARGS, "How many native readers there are."},
    {NULL},
};

static PyTypeObject NativeLoopType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tureen.workers._native.NativeLoop",
    .tp_doc = "NativeLoop(epoll_fd, on_error, maxevents=256): the event loop's wait with the "
              "connected media sockets drained in C (workers/_native_loop.c).",
    .tp_basicsize = sizeof(NativeLoop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)nl_traverse,
    .tp_clear = (inquiry)nl_clear,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)nl_init,
    .tp_dealloc = (destructor)nl_dealloc,
    .tp_methods = nl_methods,
};
