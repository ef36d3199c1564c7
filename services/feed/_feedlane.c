/*
 * services/feed/_feedlane.c: the feed's C fast lane (FeedLane), part of the common._ringc
 * extension (setup.py compiles it with common/_ringc.c; services/feed/sink.py make_lane
 * builds one). It parses, checks, sequences and writes the feed's two hot frame shapes,
 * writing through the generic ring Publisher of common/_ringc.c (common/_ring_publish.h).
 */
#include "_ring_publish.h"

/* ==================================================================== FeedLane
 * The feed's two hot frame shapes, parsed, checked, sequenced and written in one C call.
 *
 * Why: the Python decoder (services/feed/codec.py) costs ~2 us a frame, of which msgspec's
 * typed decode is ~0.4; the rest is Python (finishers, Tick and Result objects, the
 * sequencer). Live, nearly every frame is a combined-stream `trade` or `bookTicker` in
 * Binance's exact byte layout, and nearly every one is accepted, in order.
 *
 * What: take(raw, recv_ns) handles a frame only when ALL of this holds, and otherwise
 * returns 0 having changed nothing, so the Python path decides (and produces every
 * rejection, duplicate, gap and first-of-a-stream itself):
 * - the bytes are exactly Binance's layout, keys in Binance's order, no whitespace:
 *   {"stream":"..","data":{"e":"trade","E":N,"T":N,"s":"..","t":N,"p":"D","q":"D","X":"..","m":B}}
 *   {"stream":"..","data":{"e":"bookTicker","u":N,"s":"..","b":"D","B":"D","a":"D","A":"D","T":N,"E":N}}
 *   strings printable ASCII without escapes, N unsigned without leading zeros (at most 18
 *   digits), D digits with an optional fraction;
 * - the firewall accepts it: the same checks as codec._fin_trade / codec._fin_book (known
 *   symbol, id range, event times within the receive-time window, price and size ranges,
 *   book not crossed);
 * - the sequencer would pass it unchanged: the stream's slot exists in the shared sequence
 *   state (the Python dict services/feed/sequencer.py: sequence uses, updated in place here the same way) and the
 *   id is the next one (trades) or newer (books).
 * Decimal strings convert exactly as float() does: m / 10^k when m has at most 15 digits
 * (so m < 2^53) and k <= 22 (both exact, one correctly rounded division: Clinger's fast
 * path), else PyOS_string_to_double,
 * Python's own correctly rounded parser. tests/fuzz/test_feed_lane.py drives the lane and
 * the Python path with the same frames and compares ring words, counters and state.
 */
typedef struct {
    PyObject_HEAD
    Publisher *pub;     /* the ring writer's publisher: its buffer, its release */
    PyObject *symbols;  /* dict: symbol -> id (the feed's; symbols added later are seen) */
    PyObject *state;    /* dict: event -> {symbol: [last id, last E]} (codec.SeqState) */
    PyObject *extra;    /* list: symbol id -> flag bits OR-ed into its records */
    PyObject *k_trade, *k_book;
    PyObject *closed_error; /* raised when the ring was closed (common.errors.RingError) */
    int64_t past_ms, future_ms, min_ms, max_ms, max_frame;
    double max_price, max_qty;
    int64_t kind_trade, kind_book, flag_maker, flag_non_market;
    int64_t trades, books; /* records this lane wrote */
} FeedLane;

static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

typedef struct {
    const char *p, *end;
} Cur;

static inline int lit(Cur *c, const char *s, size_t n) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return 0;
    c->p += n;
    return 1;
}
#define LIT(c, s) lit((c), (s), sizeof(s) - 1)

/* a string's body up to and past its closing quote: printable ASCII, no escape */
static inline int str_body(Cur *c, const char **start, Py_ssize_t *len) {
    const char *p = c->p;
    while (p < c->end && *p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch > 0x7E || ch == '\\')
            return 0;
        p++;
    }
    if (p >= c->end)
        return 0;
    *start = c->p;
    *len = p - c->p;
    c->p = p + 1;
    return 1;
}

/* a JSON unsigned integer: no sign, no leading zero, at most 18 digits (fits int64) */
static inline int uint18(Cur *c, int64_t *out) {
    const char *p = c->p;
    int64_t v = 0;
    int n = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++n > 18)
            return 0;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (n == 0 || (n > 1 && *c->p == '0'))
        return 0;
    c->p = p;
    *out = v;
    return 1;
}

/* a run of digits at *pp: how many; each is also appended to *m while fewer than 19 were */
static inline int digit_run(const char **pp, const char *end, uint64_t *m, int seen) {
    const char *p = *pp;
    int n = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (seen + n < 19)
            *m = *m * 10 + (uint64_t)(*p - '0');
        n++;
        p++;
    }
    *pp = p;
    return n;
}

/* a decimal string's body, digits[.digits], up to and past its closing quote -> float(body) */
static inline int decimal(Cur *c, double *out) {
    const char *p = c->p;
    uint64_t m = 0;
    int digits = digit_run(&p, c->end, &m, 0), frac = 0;
    if (digits == 0)
        return 0;
    if (p < c->end && *p == '.') {
        p++;
        frac = digit_run(&p, c->end, &m, digits);
        if (frac == 0)
            return 0;
        digits += frac;
    }
    if (p >= c->end || *p != '"')
        return 0;
    if (digits <= 15 && frac <= 22) {
        *out = (double)m / POW10[frac]; /* m < 10^15 < 2^53: both exact, one rounding */
    } else {
        char buf[64];
        Py_ssize_t n = p - c->p;
        if (n >= (Py_ssize_t)sizeof(buf))
            return 0;
        memcpy(buf, c->p, (size_t)n);
        buf[n] = '\0';
        double v = PyOS_string_to_double(buf, NULL, NULL);
        if (v == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        *out = v;
    }
    c->p = p + 1;
    return 1;
}

/* the symbol's id, or -1 (unknown, or a lookup that failed: the Python path decides) */
static inline int64_t symbol_id(FeedLane *self, PyObject *sym) {
    PyObject *v = PyDict_GetItemWithError(self->symbols, sym);
    if (v == NULL) {
        PyErr_Clear();
        return -1;
    }
    long long id = PyLong_AsLongLong(v);
    if (id == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return id < 0 || id > 0xFFFF ? -1 : (int64_t)id;
}

/* the stream's sequence slot [last id, last E] (borrowed), or NULL: the Python path decides */
static inline PyObject *seq_slot(FeedLane *self, PyObject *event, PyObject *sym, int64_t *last) {
    PyObject *per = PyDict_GetItemWithError(self->state, event);
    if (per == NULL || !PyDict_CheckExact(per)) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *slot = PyDict_GetItemWithError(per, sym);
    if (slot == NULL || !PyList_CheckExact(slot) || PyList_GET_SIZE(slot) != 2) {
        PyErr_Clear();
        return NULL;
    }
    long long v = PyLong_AsLongLong(PyList_GET_ITEM(slot, 0));
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    *last = (int64_t)v;
    return slot;
}

/* slot[:] = [id, e_ms], as sequencer.sequence does; -1 on a memory error */
static inline int seq_store(PyObject *slot, int64_t id, int64_t e_ms) {
    PyObject *a = PyLong_FromLongLong(id);
    PyObject *b = PyLong_FromLongLong(e_ms);
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return -1;
    }
    PyList_SetItem(slot, 0, a); /* steals a, drops the old item */
    PyList_SetItem(slot, 1, b);
    return 0;
}

static inline int64_t extra_flags(FeedLane *self, int64_t sid, int *ok) {
    if (sid >= PyList_GET_SIZE(self->extra)) {
        *ok = 0;
        return 0;
    }
    long long f = PyLong_AsLongLong(PyList_GET_ITEM(self->extra, sid));
    if (f == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        *ok = 0;
        return 0;
    }
    *ok = 1;
    return (int64_t)f;
}

#define DECLINE(code) do { result = 0; goto code; } while (0)

static PyObject *FeedLane_take(FeedLane *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "take(raw, recv_ns) takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->pub->words == NULL) {
        PyErr_SetString(self->closed_error, "ring writer used after its ring was closed");
        return NULL;
    }
    PyObject *raw = args[0];
    if (!PyBytes_CheckExact(raw) || !PyLong_CheckExact(args[1]))
        return PyLong_FromLong(0);
    long long recv = PyLong_AsLongLong(args[1]);
    if (recv == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyLong_FromLong(0);
    }
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    if (recv < 0 || size <= 0 || size > self->max_frame)
        return PyLong_FromLong(0);
    int64_t ref = (int64_t)recv / 1000000;
    int64_t lo = ref - self->past_ms, hi = ref + self->future_ms;
    if (lo < self->min_ms)
        lo = self->min_ms;
    if (hi > self->max_ms)
        hi = self->max_ms;

    Cur c = {PyBytes_AS_STRING(raw), PyBytes_AS_STRING(raw) + size};
    const char *s0, *sym_s;
    Py_ssize_t s0n, sym_n;
    if (!LIT(&c, "{\"stream\":\"") || !str_body(&c, &s0, &s0n) || !LIT(&c, ",\"data\":{\"e\":\""))
        return PyLong_FromLong(0);
    int is_trade;
    int64_t e_ms, t_ms, id;
    double p1, q1, p2 = 0.0, q2 = 0.0;
    int64_t flags = 0;
    if (LIT(&c, "trade\",\"E\":")) {
        const char *x_s;
        Py_ssize_t x_n;
        is_trade = 1;
        if (!uint18(&c, &e_ms) || !LIT(&c, ",\"T\":") || !uint18(&c, &t_ms) ||
            !LIT(&c, ",\"s\":\"") || !str_body(&c, &sym_s, &sym_n) || !LIT(&c, ",\"t\":") ||
            !uint18(&c, &id) || !LIT(&c, ",\"p\":\"") || !decimal(&c, &p1) ||
            !LIT(&c, ",\"q\":\"") || !decimal(&c, &q1) || !LIT(&c, ",\"X\":\"") ||
            !str_body(&c, &x_s, &x_n) || !LIT(&c, ",\"m\":"))
            return PyLong_FromLong(0);
        if (LIT(&c, "true"))
            flags = self->flag_maker;
        else if (!LIT(&c, "false"))
            return PyLong_FromLong(0);
        if (!LIT(&c, "}}") || c.p != c.end)
            return PyLong_FromLong(0);
        if (!(x_n == 6 && memcmp(x_s, "MARKET", 6) == 0))
            flags |= self->flag_non_market;
        /* = codec._fin_trade: ids, times, values (the symbol below) */
        if (!(lo <= e_ms && e_ms <= hi && lo <= t_ms && t_ms <= hi))
            return PyLong_FromLong(0);
        if (!(0.0 < p1 && p1 < self->max_price && 0.0 < q1 && q1 <= self->max_qty))
            return PyLong_FromLong(0);
    } else if (LIT(&c, "bookTicker\",\"u\":")) {
        is_trade = 0;
        if (!uint18(&c, &id) || !LIT(&c, ",\"s\":\"") || !str_body(&c, &sym_s, &sym_n) ||
            !LIT(&c, ",\"b\":\"") || !decimal(&c, &p1) || !LIT(&c, ",\"B\":\"") ||
            !decimal(&c, &q1) || !LIT(&c, ",\"a\":\"") || !decimal(&c, &p2) ||
            !LIT(&c, ",\"A\":\"") || !decimal(&c, &q2) || !LIT(&c, ",\"T\":") ||
            !uint18(&c, &t_ms) || !LIT(&c, ",\"E\":") || !uint18(&c, &e_ms) ||
            !LIT(&c, "}}") || c.p != c.end)
            return PyLong_FromLong(0);
        /* = codec._fin_book */
        if (!(lo <= e_ms && e_ms <= hi && lo <= t_ms && t_ms <= hi))
            return PyLong_FromLong(0);
        if (!(0.0 < p1 && p1 < self->max_price && 0.0 < p2 && p2 < self->max_price))
            return PyLong_FromLong(0);
        if (!(0.0 < q1 && q1 <= self->max_qty && 0.0 < q2 && q2 <= self->max_qty) || p1 > p2)
            return PyLong_FromLong(0);
        t_ms = e_ms; /* a book record's event time is E */
    } else {
        return PyLong_FromLong(0);
    }

    long result = 0;
    PyObject *sym = PyUnicode_FromStringAndSize(sym_s, sym_n);
    if (sym == NULL)
        return NULL;
    int64_t sid = symbol_id(self, sym);
    if (sid < 0)
        DECLINE(done);
    int64_t last;
    PyObject *slot = seq_slot(self, is_trade ? self->k_trade : self->k_book, sym, &last);
    if (slot == NULL)
        DECLINE(done);
    if (is_trade ? id != last + 1 : id <= last) /* a gap, a duplicate or a reset: Python's */
        DECLINE(done);
    int ok;
    int64_t extra = extra_flags(self, sid, &ok);
    if (!ok)
        DECLINE(done);
    if (seq_store(slot, id, e_ms) < 0) {
        Py_DECREF(sym);
        return NULL;
    }
    if (is_trade) {
        write_slot(self->pub, sid, self->kind_trade, flags | extra, recv, t_ms, id, p1, q1, 0.0, 0.0);
        self->trades++;
        result = 1;
    } else {
        write_slot(self->pub, sid, self->kind_book, extra, recv, t_ms, id, p1, q1, p2, q2);
        self->books++;
        result = 2;
    }
done:
    Py_DECREF(sym);
    return PyLong_FromLong(result);
}

static int FeedLane_init(FeedLane *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"publisher", "symbols", "state", "extra_flags", "past_ms", "future_ms",
                             "min_event_ms", "max_event_ms", "max_frame", "max_price", "max_qty",
                             "kind_trade", "kind_book", "flag_maker", "flag_non_market", "closed_error", NULL};
    PyObject *pub, *symbols, *state, *extra, *closed_error = PyExc_RuntimeError;
    long long past, future, min_ms, max_ms, max_frame, kt, kb, fm, fnm;
    double max_price, max_qty;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!LLLLLddLLLL|O", kwlist, &PublisherType, &pub,
                                     &PyDict_Type, &symbols, &PyDict_Type, &state, &PyList_Type,
                                     &extra, &past, &future, &min_ms, &max_ms, &max_frame, &max_price,
                                     &max_qty, &kt, &kb, &fm, &fnm, &closed_error))
        return -1;
    if (!PyExceptionClass_Check(closed_error)) {
        PyErr_SetString(PyExc_TypeError, "closed_error must be an exception class");
        return -1;
    }
    if (!PyDict_CheckExact(symbols) || !PyDict_CheckExact(state) || !PyList_CheckExact(extra)) {
        PyErr_SetString(PyExc_TypeError, "symbols and state must be dicts, extra_flags a list");
        return -1;
    }
    PyObject *kt_s = PyUnicode_InternFromString("trade");
    PyObject *kb_s = PyUnicode_InternFromString("bookTicker");
    if (kt_s == NULL || kb_s == NULL) {
        Py_XDECREF(kt_s);
        Py_XDECREF(kb_s);
        return -1;
    }
    Py_INCREF(pub);
    Py_INCREF(symbols);
    Py_INCREF(state);
    Py_INCREF(extra);
    Py_INCREF(closed_error);
    Py_XSETREF(self->closed_error, closed_error);
    Py_XSETREF(self->pub, (Publisher *)pub);
    Py_XSETREF(self->symbols, symbols);
    Py_XSETREF(self->state, state);
    Py_XSETREF(self->extra, extra);
    Py_XSETREF(self->k_trade, kt_s);
    Py_XSETREF(self->k_book, kb_s);
    self->past_ms = past;
    self->future_ms = future;
    self->min_ms = min_ms;
    self->max_ms = max_ms;
    self->max_frame = max_frame;
    self->max_price = max_price;
    self->max_qty = max_qty;
    self->kind_trade = kt;
    self->kind_book = kb;
    self->flag_maker = fm;
    self->flag_non_market = fnm;
    self->trades = self->books = 0;
    return 0;
}

static void FeedLane_dealloc(FeedLane *self) {
    Py_XDECREF(self->pub);
    Py_XDECREF(self->symbols);
    Py_XDECREF(self->state);
    Py_XDECREF(self->extra);
    Py_XDECREF(self->k_trade);
    Py_XDECREF(self->k_book);
    Py_XDECREF(self->closed_error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *FeedLane_counts(FeedLane *self, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(LL)", (long long)self->trades, (long long)self->books);
}

static PyMethodDef FeedLane_methods[] = {
    {"take", (PyCFunction)(void (*)(void))FeedLane_take, METH_FASTCALL,
     "take(raw, recv_ns) -> 1 (a trade written), 2 (a book written), 0 (not handled: nothing changed)"},
    {"counts", (PyCFunction)FeedLane_counts, METH_NOARGS, "(trades, books) written by this lane"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject FeedLaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "common._ringc.FeedLane",
    .tp_basicsize = sizeof(FeedLane),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FeedLane(publisher, symbols, state, extra_flags, ...): the feed's hot frames in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FeedLane_init,
    .tp_dealloc = (destructor)FeedLane_dealloc,
    .tp_methods = FeedLane_methods,
};

