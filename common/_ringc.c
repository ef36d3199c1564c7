/*
 * common._ringc: the ring's per-record publish as one C call.
 *
 * Why: from Python, a numba kernel costs 0.3 to 0.7 us a call (numba's dispatcher, or its
 * compiled entry point, unboxing 11 arguments); the ring itself costs 10 to 30 ns a record
 * (bench/FINDINGS.md, section 1). A METH_FASTCALL method that converts its ten scalars and
 * writes the slot costs about a tenth of a microsecond, which is what lets a Python feed
 * publish tick by tick faster than a naive struct.pack_into ring that has no safety at all.
 *
 * What: exactly ring_publish of common/ring.py (the reference; tests/unit/common/
 * test_ring_c.py checks the two write the same words): mark the slot BUSY, release fence,
 * the payload, then the slot's stamp (sequence + 1) and the writer cursor with release
 * stores. GCC's __atomic builtins give the same orderings as the numba intrinsics of
 * common/_ring_atomics.py: plain movs on x86-64, stlr/dmb on AArch64.
 *
 * Publisher(words, slots_w, writer_cursor_w, busy) holds a buffer export of the ring's
 * int64 words (so the mapping cannot go away under it) until release(); RingWriter
 * releases it when its ring closes. Optional at build time: without a compiler the ring
 * uses the numba entry point instead (common/ring.py).
 *
 * The same extension module also holds the feed's fast lane, FeedLane, compiled from its own
 * source next to the feed (services/feed/_feedlane.c); the slot protocol both use is in
 * common/_ring_publish.h.
 */
#include "_ring_publish.h"

static void Publisher_release_view(Publisher *self) {
    if (self->held) {
        PyBuffer_Release(&self->view);
        self->held = 0;
        self->words = NULL;
    }
}

static int Publisher_init(Publisher *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"words", "slots_w", "writer_cursor_w", "busy", NULL};
    PyObject *obj;
    Py_ssize_t slots_w, cursor_w;
    long long busy;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnnL", kwlist, &obj, &slots_w, &cursor_w, &busy))
        return -1;
    Publisher_release_view(self);
    if (PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    self->held = 1;
    if (self->view.itemsize != 8 || ((uintptr_t)self->view.buf & 7) != 0) {
        Publisher_release_view(self);
        PyErr_SetString(PyExc_TypeError, "words must be an aligned, contiguous int64 buffer");
        return -1;
    }
    Py_ssize_t n = self->view.len / 8;
    Py_ssize_t cap = slots_w >= 0 && n > slots_w ? (n - slots_w) / WORDS : 0;
    if (cap < 2 || (cap & (cap - 1)) != 0 || cursor_w < 0 || cursor_w >= slots_w) {
        Publisher_release_view(self);
        PyErr_SetString(PyExc_ValueError, "not a ring: the slots are not a power of two, or the cursor is outside the header");
        return -1;
    }
    self->words = (int64_t *)self->view.buf;
    self->mask = (int64_t)cap - 1;
    self->slots_w = slots_w;
    self->cursor_w = cursor_w;
    self->busy = (int64_t)busy;
    return 0;
}

static void Publisher_dealloc(Publisher *self) {
    Publisher_release_view(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Publisher_publish(Publisher *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 8 || nargs > 10) {
        PyErr_Format(PyExc_TypeError,
                     "publish(symbol_id, kind, flags, recv_ns, event_ms, id, price, qty[, aux, aux_qty]) "
                     "takes 8 to 10 arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->words == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ring publisher used after its ring was closed");
        return NULL;
    }
    int64_t symbol_id, kind, flags, recv_ns, event_ms, id;
    double price, qty, aux = 0.0, aux_qty = 0.0;
    if (as_i64(args[0], &symbol_id) || as_i64(args[1], &kind) || as_i64(args[2], &flags) ||
        as_i64(args[3], &recv_ns) || as_i64(args[4], &event_ms) || as_i64(args[5], &id) ||
        as_f64(args[6], &price) || as_f64(args[7], &qty) ||
        (nargs > 8 && as_f64(args[8], &aux)) || (nargs > 9 && as_f64(args[9], &aux_qty)))
        return NULL;

    return PyLong_FromLongLong(write_slot(self, symbol_id, kind, flags, recv_ns, event_ms, id,
                                          price, qty, aux, aux_qty));
}

static PyObject *Publisher_release(Publisher *self, PyObject *Py_UNUSED(ignored)) {
    Publisher_release_view(self);
    Py_RETURN_NONE;
}

static PyMethodDef Publisher_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))Publisher_publish, METH_FASTCALL,
     "publish(symbol_id, kind, flags, recv_ns, event_ms, id, price, qty, aux=0.0, aux_qty=0.0) -> sequence"},
    {"release", (PyCFunction)Publisher_release, METH_NOARGS, "drop the buffer; publish raises afterwards"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject PublisherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "common._ringc.Publisher",
    .tp_basicsize = sizeof(Publisher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Publisher(words, slots_w, writer_cursor_w, busy): the ring's per-record publish in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Publisher_init,
    .tp_dealloc = (destructor)Publisher_dealloc,
    .tp_methods = Publisher_methods,
};

static struct PyModuleDef ringc_module = {
    PyModuleDef_HEAD_INIT, "common._ringc", "The ring's per-record publish, and the feed's hot frames, as one C call each.", -1, NULL,
};

static int add_type(PyObject *m, const char *name, PyTypeObject *type) {
    Py_INCREF(type);
    if (PyModule_AddObject(m, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__ringc(void) {
    if (PyType_Ready(&PublisherType) < 0 || PyType_Ready(&FeedLaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ringc_module);
    if (m == NULL)
        return NULL;
    if (add_type(m, "Publisher", &PublisherType) < 0 || add_type(m, "FeedLane", &FeedLaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
