/*
 * common/_ring_publish.h: the ring's slot protocol, shared by the two C sources of the
 * common._ringc extension: common/_ringc.c (the generic Publisher) and
 * services/feed/_feedlane.c (the feed's fast lane, which writes through a Publisher).
 */
#ifndef AEGIS_RING_PUBLISH_H
#define AEGIS_RING_PUBLISH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define WORDS 8 /* int64 words per 64-byte record */

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
    int64_t *words;
    int64_t mask;  /* capacity - 1 */
    Py_ssize_t slots_w;
    Py_ssize_t cursor_w;
    int64_t busy;
} Publisher;

extern PyTypeObject PublisherType; /* common/_ringc.c */
extern PyTypeObject FeedLaneType;  /* services/feed/_feedlane.c */

static inline int as_i64(PyObject *o, int64_t *out) {
    long long v = PyLong_AsLongLong(o); /* ints, bools, IntEnums, numpy integers; not floats */
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (int64_t)v;
    return 0;
}

static inline int as_f64(PyObject *o, double *out) {
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static inline int64_t f64_bits(double d) {
    int64_t b;
    memcpy(&b, &d, 8);
    return b;
}

/* The slot protocol (exactly ring_publish of common/ring.py); returns the record's sequence. */
static inline int64_t write_slot(Publisher *self, int64_t symbol_id, int64_t kind, int64_t flags,
                                 int64_t recv_ns, int64_t event_ms, int64_t id, double price,
                                 double qty, double aux, double aux_qty) {
    int64_t *w = self->words;
    int64_t s = w[self->cursor_w]; /* only the writer stores it: a plain load is current */
    int64_t *slot = w + self->slots_w + (s & self->mask) * WORDS;
    __atomic_store_n(&slot[0], self->busy, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* a reader that sees new payload also sees BUSY */
    slot[1] = recv_ns;
    slot[2] = event_ms;
    slot[3] = id;
    slot[4] = f64_bits(price);
    slot[5] = f64_bits(qty);
    slot[6] = f64_bits(aux);
    float aq = (float)aux_qty;
    uint32_t aq_bits;
    memcpy(&aq_bits, &aq, 4);
    /* last word, little-endian: aux_qty f32 | symbol_id u16 | kind u8 | flags u8 */
    slot[7] = (int64_t)((uint64_t)aq_bits | ((uint64_t)(symbol_id & 0xFFFF) << 32) |
                        ((uint64_t)(kind & 0xFF) << 48) | ((uint64_t)(flags & 0xFF) << 56));
    __atomic_store_n(&slot[0], s + 1, __ATOMIC_RELEASE);          /* payload before stamp */
    __atomic_store_n(&w[self->cursor_w], s + 1, __ATOMIC_RELEASE); /* stamp before cursor */
    return s;
}

#endif
