/* shared._native: optional C fast paths for the security gate (payload limits and redaction).
 *
 * check_limits is a *pre-check*: it answers the common case quickly and says "look closer"
 * otherwise, so the pure-Python code in shared/security/limits.py decides and explains refusals.
 * Redactor runs the redaction engine of shared/security/redaction.py, which configures it with its
 * rule set and holds the reference implementation both are tested against.
 * Nothing here runs Python code while it walks a value (only exact built-in types are inspected),
 * so borrowed references stay valid for the whole walk. No recursion: walks keep explicit stacks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A walk never goes deeper than this, whatever the limits say: a cyclic value ends the walk with
 * "look closer" instead of growing the stack forever. */
#define HARD_DEPTH_CAP ((Py_ssize_t)1 << 20)

typedef struct {
    PyObject *obj;    /* borrowed: the value owns it, and no Python code runs during a walk */
    Py_ssize_t level; /* 1 for the root container */
} Frame;

typedef struct {
    Frame *items;
    Py_ssize_t size;
    Py_ssize_t cap;
} Stack;

static int
stack_push(Stack *st, PyObject *obj, Py_ssize_t level)
{
    if (st->size == st->cap) {
        Py_ssize_t cap = st->cap ? st->cap * 2 : 64;
        if (cap > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Frame)) {
            PyErr_NoMemory();
            return -1;
        }
        Frame *items = PyMem_Realloc(st->items, (size_t)cap * sizeof(Frame));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        st->items = items;
        st->cap = cap;
    }
    st->items[st->size].obj = obj;
    st->items[st->size].level = level;
    st->size++;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * check_limits(value, max_depth, max_string, max_array) -> bool
 */

/* A str whose length can be read without running any code (3.11 still has legacy, not-ready str
 * objects made by deprecated C APIs; from 3.12 every str is ready). */
#if PY_VERSION_HEX < 0x030C0000
#define STR_READY(op) PyUnicode_IS_READY(op)
#else
#define STR_READY(op) 1
#endif

typedef struct {
    Py_ssize_t max_depth;
    Py_ssize_t max_string;
    Py_ssize_t max_array;
} Limits;

/* 1: fine (containers are pushed), 0: look closer, -1: error set */
static int
check_child(Stack *st, PyObject *obj, Py_ssize_t level, const Limits *lim)
{
    if (PyUnicode_CheckExact(obj)) {
        return STR_READY(obj) && PyUnicode_GET_LENGTH(obj) <= lim->max_string;
    }
    if (obj == Py_None || PyLong_CheckExact(obj) || PyFloat_CheckExact(obj) || PyBool_Check(obj)) {
        return 1;
    }
    if (PyDict_CheckExact(obj) || PyList_CheckExact(obj)) {
        Py_ssize_t child_level = level + 1;
        if (child_level > lim->max_depth || child_level > HARD_DEPTH_CAP) {
            return 0;
        }
        return stack_push(st, obj, child_level) < 0 ? -1 : 1;
    }
    return 0; /* tuples, subclasses, anything else: the exact walk judges it */
}

static PyObject *
native_check_limits(PyObject *module, PyObject *args)
{
    PyObject *value;
    Limits lim;
    if (!PyArg_ParseTuple(args, "Onnn:check_limits", &value, &lim.max_depth, &lim.max_string,
                          &lim.max_array)) {
        return NULL;
    }
    Stack st = {NULL, 0, 0};
    int ok = check_child(&st, value, 0, &lim);
    while (ok == 1 && st.size > 0) {
        Frame frame = st.items[--st.size];
        PyObject *node = frame.obj;
        if (PyList_CheckExact(node)) {
            Py_ssize_t n = PyList_GET_SIZE(node);
            if (n > lim.max_array) {
                ok = 0;
                break;
            }
            for (Py_ssize_t i = 0; i < n && ok == 1; i++) {
                ok = check_child(&st, PyList_GET_ITEM(node, i), frame.level, &lim);
            }
        }
        else {
            Py_ssize_t pos = 0;
            PyObject *key, *item;
            while (ok == 1 && PyDict_Next(node, &pos, &key, &item)) {
                if (!PyUnicode_CheckExact(key) || !STR_READY(key) || PyUnicode_GET_LENGTH(key) > lim.max_string) {
                    ok = 0;
                    break;
                }
                ok = check_child(&st, item, frame.level, &lim);
            }
        }
    }
    PyMem_Free(st.items);
    if (ok < 0) {
        return NULL;
    }
    return PyBool_FromLong(ok);
}

/* ---------------------------------------------------------------------------------------------
 * Redactor(config): the redaction engine of shared/security/redaction.py, in C.
 *
 * The Python module is the reference and owns the rule set: it passes every token rule, field-name
 * list, character class and bound here as data (redaction.native_config()), and this code runs the
 * same scan (see that module's docstring for the contract). Character classes are ASCII; a code
 * point >= 128 is in none of them. Nothing here runs Python code during a scan or a walk, so
 * borrowed references to the input stay valid throughout. The walks keep explicit stacks.
 */

typedef struct {
    uint64_t lo, hi;
} CharSet;

static inline int
lowest_bit(uint64_t x) /* x != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int bit = 0;
    while (!((x >> bit) & 1)) {
        bit++;
    }
    return bit;
#endif
}

static inline int
in_set(const CharSet *set, Py_UCS4 c)
{
    return c < 64 ? (int)((set->lo >> c) & 1) : c < 128 ? (int)((set->hi >> (c - 64)) & 1) : 0;
}

#define MAX_SEGMENTS 4
#define MAX_LIST 64
#define PAIRS (128 * 128)
#define TRIGRAM_BITS (1 << 16)

/* the filter bit of a prefix's first three characters (a character >= 128, or the end of the text, as 0:
   no prefix has either there, and a two-character prefix sets the bits of every third character) */
static inline uint32_t
trigram(Py_UCS4 a, Py_UCS4 b, Py_UCS4 c)
{
    uint32_t x = ((uint32_t)a << 14) | ((uint32_t)b << 7) | (c < 128 ? (uint32_t)c : 0);
    return (x * 2654435761u) >> 16;
}

typedef struct {
    char *lead;
    Py_ssize_t lead_len;
    CharSet chars;
    Py_ssize_t min, max;
} Segment;

typedef struct {
    char *prefix;
    Py_ssize_t prefix_len;
    CharSet blocked;
    int nseg;
    Segment seg[MAX_SEGMENTS];
} TokenRule;

typedef struct {
    int n;
    char *item[MAX_LIST];
    Py_ssize_t len[MAX_LIST];
    uint64_t lengths; /* bit L set when a word of length L < 64 is in the list */
    uint64_t by_first[128]; /* bit w set when word w starts with that character */
} WordList;

/* verdicts on short ASCII names, by their exact characters (a pure function of them): separators
   repeat the same few names, and a name is judged once per run of text instead of once per separator */
#define NAME_CACHE_BITS 9
#define NAME_CACHE_MAX 16
typedef struct {
    uint64_t lo, hi; /* the characters, eight per word */
    uint8_t len;     /* 0: an empty slot */
    int8_t verdict[2]; /* is_secret_field, holds_secret_value; -1: not judged yet */
} NameSlot;

typedef struct {
    NameSlot slot[1 << NAME_CACHE_BITS];
} NameCache;

typedef struct {
    PyObject_HEAD
    int ntok;
    TokenRule *tok;
    int32_t *pair_start; /* PAIRS + 1 offsets into pair_rules */
    uint64_t trigrams[TRIGRAM_BITS / 64]; /* a filter over the first three characters of the prefixes */
    int *pair_rules;
    uint8_t first[128];
    WordList deny, safe, partials, words, value_endings, auth_schemes, bare_schemes, pem_suffixes, json_literals;
    char *pem_begin, *pem_end, *pem_dashes;
    Py_ssize_t pem_begin_len, pem_end_len, pem_dashes_len, pem_max_header, pem_max_label;
    PyObject *redacted, *redacted_key, *too_deep;
    Py_ssize_t name_max, max_spaces, max_scheme_spaces, max_walk_depth;
    CharSet name_chars, credential_chars, pem_header_chars, stop_equals, stop_colon, url_user_stop,
        url_password_stop, ascii_ws, word;
    CharSet scheme_first; /* the first characters of auth_schemes, both cases */
    unsigned long long work;
    NameCache names;
} RedactorObject;

/* -- the text -------------------------------------------------------------------------------- */

typedef struct {
    int kind;
    const void *data;
    Py_ssize_t n;
} Text;

static inline Py_UCS4
rd(const Text *t, Py_ssize_t i)
{
    switch (t->kind) {
    case PyUnicode_1BYTE_KIND:
        return ((const Py_UCS1 *)t->data)[i];
    case PyUnicode_2BYTE_KIND:
        return ((const Py_UCS2 *)t->data)[i];
    default:
        return ((const Py_UCS4 *)t->data)[i];
    }
}

static int
text_of(PyObject *str, Text *t)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(str) < 0) {
        return -1;
    }
#endif
    t->kind = PyUnicode_KIND(str);
    t->data = PyUnicode_DATA(str);
    t->n = PyUnicode_GET_LENGTH(str);
    return 0;
}

/* text[at:] starts with the ASCII string s */
static inline int
starts(const Text *t, Py_ssize_t at, const char *s, Py_ssize_t len)
{
    if (at < 0 || len > t->n - at) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < len; k++) {
        if (rd(t, at + k) != (unsigned char)s[k]) {
            return 0;
        }
    }
    return 1;
}

static inline Py_UCS4
ascii_lower(Py_UCS4 c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* text[at:at+len] is ASCII and equals the lower-case ASCII s with ASCII letters folded */
static inline int
starts_folded(const Text *t, Py_ssize_t at, const char *s, Py_ssize_t len)
{
    if (len > t->n - at) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < len; k++) {
        Py_UCS4 c = rd(t, at + k);
        if (c >= 128 || ascii_lower(c) != (unsigned char)s[k]) {
            return 0;
        }
    }
    return 1;
}

static inline Py_ssize_t
backslashes_before(const Text *t, Py_ssize_t at, Py_ssize_t floor)
{
    Py_ssize_t run = 0;
    while (at - run - 1 >= floor && rd(t, at - run - 1) == '\\') {
        run++;
    }
    return run;
}

/* the end of the maximal run of `set` from `at` (stopping at `limit`) */
static inline Py_ssize_t
run_of(const Text *t, Py_ssize_t at, Py_ssize_t limit, const CharSet *set, unsigned long long *work)
{
    Py_ssize_t i = at;
    while (i < limit && in_set(set, rd(t, i))) {
        i++;
    }
    *work += (unsigned long long)(i - at + 1);
    return i;
}

/* the end of the run of characters not in `stop` from `at` */
static inline Py_ssize_t
until(const Text *t, Py_ssize_t at, const CharSet *stop, unsigned long long *work)
{
    Py_ssize_t i = at;
    while (i < t->n && !in_set(stop, rd(t, i))) {
        i++;
    }
    *work += (unsigned long long)(i - at + 1);
    return i;
}

/* -- field names ------------------------------------------------------------------------------- */

static int
list_has_long(const WordList *list, const Py_UCS4 *s, Py_ssize_t n)
{
    for (int w = 0; w < list->n; w++) {
        if (list->len[w] != n) {
            continue;
        }
        Py_ssize_t k = 0;
        while (k < n && s[k] == (unsigned char)list->item[w][k]) {
            k++;
        }
        if (k == n) {
            return 1;
        }
    }
    return 0;
}

static inline int
list_has(const WordList *list, const Py_UCS4 *s, Py_ssize_t n)
{
    if (n >= 64 || !((list->lengths >> n) & 1) || n == 0 || s[0] >= 128) {
        return n >= 64 ? list_has_long(list, s, n) : 0;
    }
    for (uint64_t cand = list->by_first[s[0]]; cand != 0; cand &= cand - 1) {
        int w = lowest_bit(cand);
        if (list->len[w] != n) {
            continue;
        }
        Py_ssize_t k = 1;
        while (k < n && s[k] == (unsigned char)list->item[w][k]) {
            k++;
        }
        if (k == n) {
            return 1;
        }
    }
    return 0;
}

static inline int
has_at(const Py_UCS4 *s, Py_ssize_t n, Py_ssize_t at, const char *w, Py_ssize_t len)
{
    if (len > n - at) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < len; k++) {
        if (s[at + k] != (unsigned char)w[k]) {
            return 0;
        }
    }
    return 1;
}

/* normalize_name() of text[s:e] into out (room for 2 * (e - s)); returns its length */
static Py_ssize_t
normalize(const RedactorObject *self, const Text *t, Py_ssize_t s, Py_ssize_t e, Py_UCS4 *out)
{
    while (s < e && in_set(&self->ascii_ws, rd(t, s))) {
        s++;
    }
    while (e > s && in_set(&self->ascii_ws, rd(t, e - 1))) {
        e--;
    }
    Py_ssize_t n = 0;
    int previous = 0; /* the previous character was [a-z0-9] */
    for (Py_ssize_t i = s; i < e; i++) {
        Py_UCS4 c = rd(t, i);
        if (c >= 'A' && c <= 'Z') {
            if (previous) {
                out[n++] = '_';
            }
            out[n++] = c + ('a' - 'A');
            previous = 0;
        }
        else if (c == '-' || c == ' ' || c == '.') {
            out[n++] = '_';
            previous = 0;
        }
        else {
            out[n++] = c;
            previous = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        }
    }
    return n;
}

static int
decide_field(const RedactorObject *self, const Py_UCS4 *s, Py_ssize_t n)
{
    if (list_has(&self->deny, s, n)) {
        return 1;
    }
    if (list_has(&self->safe, s, n)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] >= 128) {
            continue;
        }
        for (uint64_t cand = self->partials.by_first[s[i]]; cand != 0; cand &= cand - 1) {
            int w = lowest_bit(cand);
            if (has_at(s, n, i, self->partials.item[w], self->partials.len[w])) {
                return 1;
            }
        }
    }
    for (Py_ssize_t i = 0; i + 4 <= n; i++) {
        if (s[i] == '_' && has_at(s, n, i, "_key", 4) && (i + 4 == n || s[i + 4] == '_')) {
            return 1;
        }
    }
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '_') {
            if (list_has(&self->words, s + start, i - start)) {
                return 1;
            }
            start = i + 1;
        }
    }
    return 0;
}

static int
decide_value_field(const RedactorObject *self, const Py_UCS4 *s, Py_ssize_t n)
{
    if (list_has(&self->deny, s, n)) {
        return 1;
    }
    for (int w = 0; w < self->value_endings.n; w++) {
        Py_ssize_t len = self->value_endings.len[w];
        if (len <= n && has_at(s, n, n - len, self->value_endings.item[w], len)) {
            return 1;
        }
    }
    return 0;
}

static int judge_name_uncached(RedactorObject *self, const Text *t, Py_ssize_t s, Py_ssize_t e, int value_rule);

/* is_secret_field / holds_secret_value of text[s:e]; -1 on memory error. A name of 1..NAME_CACHE_MAX
   ASCII characters is looked up first in a direct-mapped cache keyed by all of its characters. */
static int
judge_name(RedactorObject *self, const Text *t, Py_ssize_t s, Py_ssize_t e, int value_rule)
{
    Py_ssize_t len = e - s;
    if (len < 1 || len > NAME_CACHE_MAX) {
        return judge_name_uncached(self, t, s, e, value_rule);
    }
    uint64_t word[2] = {0, 0};
    if (t->kind == PyUnicode_1BYTE_KIND) {
        memcpy(word, (const Py_UCS1 *)t->data + s, (size_t)len);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        word[0] = __builtin_bswap64(word[0]); /* character k at bits 8k, as the loop below packs it */
        word[1] = __builtin_bswap64(word[1]);
#endif
        if ((word[0] | word[1]) & 0x8080808080808080ULL) {
            return judge_name_uncached(self, t, s, e, value_rule);
        }
    }
    else {
        for (Py_ssize_t k = 0; k < len; k++) {
            Py_UCS4 c = rd(t, s + k);
            if (c >= 128) {
                return judge_name_uncached(self, t, s, e, value_rule);
            }
            word[k >> 3] |= (uint64_t)c << ((k & 7) * 8);
        }
    }
    uint64_t h = (word[0] * 0x9E3779B97F4A7C15ULL) ^ (word[1] * 0xC2B2AE3D27D4EB4FULL) ^ (uint64_t)len;
    NameSlot *slot = &self->names.slot[(h * 0xFF51AFD7ED558CCDULL) >> (64 - NAME_CACHE_BITS)];
    if (slot->len == (uint8_t)len && slot->lo == word[0] && slot->hi == word[1]) {
        if (slot->verdict[value_rule] >= 0) {
            self->work += (unsigned long long)(len + 1); /* as judging it counts */
            return slot->verdict[value_rule];
        }
    }
    else {
        slot->lo = word[0];
        slot->hi = word[1];
        slot->len = (uint8_t)len;
        slot->verdict[0] = slot->verdict[1] = -1;
    }
    int verdict = judge_name_uncached(self, t, s, e, value_rule);
    if (verdict >= 0) {
        slot->verdict[value_rule] = (int8_t)verdict;
    }
    return verdict;
}

static int
judge_name_uncached(RedactorObject *self, const Text *t, Py_ssize_t s, Py_ssize_t e, int value_rule)
{
    Py_UCS4 local[1024];
    Py_UCS4 *buf = local;
    if (2 * (e - s) > (Py_ssize_t)(sizeof(local) / sizeof(local[0]))) {
        buf = PyMem_Malloc(sizeof(Py_UCS4) * (size_t)(2 * (e - s)));
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t n = normalize(self, t, s, e, buf);
    self->work += (unsigned long long)(e - s + 1);
    int verdict = value_rule ? decide_value_field(self, buf, n) : decide_field(self, buf, n);
    if (buf != local) {
        PyMem_Free(buf);
    }
    return verdict;
}

/* -- the scan ---------------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t start, end;
    int key; /* 1: the private-key marker */
} Span;

typedef struct {
    Span *items;
    Py_ssize_t size, cap;
} Spans;

static int
spans_push(Spans *spans, Py_ssize_t start, Py_ssize_t end, int key)
{
    if (spans->size == spans->cap) {
        Py_ssize_t cap = spans->cap ? spans->cap * 2 : 16;
        Span *items = PyMem_Realloc(spans->items, sizeof(Span) * (size_t)cap);
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        spans->items = items;
        spans->cap = cap;
    }
    spans->items[spans->size].start = start;
    spans->items[spans->size].end = end;
    spans->items[spans->size].key = key;
    spans->size++;
    return 0;
}

typedef struct {
    Py_ssize_t end_at; /* -2: not searched yet, -1: none left */
    Py_ssize_t end_stop;
    Py_ssize_t quote_at;
} Blocks;

typedef struct {
    RedactorObject *self;
    const Text *t;
    int json_keys;
    unsigned long long work;
    Py_ssize_t start, end; /* the span found */
    int key;
    Py_ssize_t last_end; /* where the last span pushed ends (-1: none yet) */
} Scan;

/* the end of "<label> PRIVATE KEY[ BLOCK]-----" at `at`, or -1 */
static Py_ssize_t
pem_header(Scan *sc, Py_ssize_t at)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    Py_ssize_t limit = at + self->pem_max_header < t->n ? at + self->pem_max_header : t->n;
    Py_ssize_t end = run_of(t, at, limit, &self->pem_header_chars, &sc->work);
    if (!starts(t, end, self->pem_dashes, self->pem_dashes_len)) {
        return -1;
    }
    Py_ssize_t label = end - at;
    for (int w = 0; w < self->pem_suffixes.n; w++) {
        Py_ssize_t len = self->pem_suffixes.len[w];
        if (len <= label && starts(t, end - len, self->pem_suffixes.item[w], len)) {
            return label - len <= self->pem_max_label ? end + self->pem_dashes_len : -1;
        }
    }
    return -1;
}

static Py_ssize_t
find_ascii(Scan *sc, const char *s, Py_ssize_t len, Py_ssize_t from)
{
    const Text *t = sc->t;
    for (Py_ssize_t i = from; i + len <= t->n; i++) {
        if (rd(t, i) == (unsigned char)s[0] && starts(t, i, s, len)) {
            sc->work += (unsigned long long)(i - from + 1);
            return i;
        }
    }
    sc->work += (unsigned long long)(t->n - from + 1);
    return -1;
}

static Py_ssize_t
blocks_end(Scan *sc, Blocks *b, Py_ssize_t after)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    if (b->end_at == -2 || (b->end_at >= 0 && b->end_at < after)) {
        Py_ssize_t at = find_ascii(sc, self->pem_end, self->pem_end_len, after);
        Py_ssize_t stop = -1;
        while (at >= 0) {
            stop = pem_header(sc, at + self->pem_end_len);
            if (stop >= 0) {
                break;
            }
            at = find_ascii(sc, self->pem_end, self->pem_end_len, at + 1);
        }
        b->end_at = at;
        b->end_stop = stop;
    }
    if (b->quote_at == -2 || (b->quote_at >= 0 && b->quote_at < after)) {
        b->quote_at = find_ascii(sc, "\"", 1, after);
    }
    Py_ssize_t quote_stop = t->n;
    if (b->quote_at >= 0) {
        quote_stop = b->quote_at - backslashes_before(t, b->quote_at, after);
    }
    if (b->end_at >= 0 && b->end_at < quote_stop) {
        return b->end_stop;
    }
    return quote_stop;
}

static int
scan_pem(Scan *sc, Blocks *b, Py_ssize_t at)
{
    const RedactorObject *self = sc->self;
    if (!starts(sc->t, at, self->pem_begin, self->pem_begin_len)) {
        return 0;
    }
    Py_ssize_t after = pem_header(sc, at + self->pem_begin_len);
    if (after < 0) {
        return 0;
    }
    sc->start = at;
    sc->end = blocks_end(sc, b, after);
    sc->key = 1;
    return 1;
}

static int
scan_token(Scan *sc, Py_ssize_t at)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    if (at + 1 >= t->n) {
        return 0;
    }
    Py_UCS4 c1 = rd(t, at), c2 = rd(t, at + 1);
    if (c1 >= 128 || c2 >= 128) {
        return 0;
    }
    int pair = (int)((c1 << 7) | c2);
    /* right after a span, the character before is its replacement's ']' */
    Py_UCS4 previous = at > 0 ? (at == sc->last_end ? ']' : rd(t, at - 1)) : 0x110000;
    for (int32_t k = self->pair_start[pair]; k < self->pair_start[pair + 1]; k++) {
        const TokenRule *rule = &self->tok[self->pair_rules[k]];
        if ((at > 0 && in_set(&rule->blocked, previous)) || !starts(t, at, rule->prefix, rule->prefix_len)) {
            continue;
        }
        Py_ssize_t end = at + rule->prefix_len;
        int ok = 1;
        for (int s = 0; s < rule->nseg && ok; s++) {
            const Segment *seg = &rule->seg[s];
            if (seg->lead_len) {
                if (!starts(t, end, seg->lead, seg->lead_len)) {
                    ok = 0;
                    break;
                }
                end += seg->lead_len;
            }
            Py_ssize_t start = end;
            end = run_of(t, start, t->n, &seg->chars, &sc->work);
            if (end - start < seg->min || (seg->max && end - start > seg->max)) {
                ok = 0;
            }
        }
        if (ok) {
            sc->start = at;
            sc->end = end;
            sc->key = 0;
            return 1;
        }
    }
    return 0;
}

static int
scan_bare(Scan *sc, Py_ssize_t at)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    if (at > 0 && at != sc->last_end && in_set(&self->word, rd(t, at - 1))) {
        return 0;
    }
    for (int w = 0; w < self->bare_schemes.n; w++) {
        Py_ssize_t len = self->bare_schemes.len[w];
        if (!starts_folded(t, at, self->bare_schemes.item[w], len)) {
            continue;
        }
        Py_ssize_t after = at + len, start = after;
        while (start < t->n && rd(t, start) == ' ' && start - after < self->max_scheme_spaces) {
            start++;
        }
        if (start == after) {
            return 0;
        }
        Py_ssize_t end = run_of(t, start, t->n, &self->credential_chars, &sc->work);
        if (end - start >= 8) {
            for (Py_ssize_t i = start; i < end; i++) {
                Py_UCS4 c = rd(t, i);
                if (c >= '0' && c <= '9') {
                    sc->start = start;
                    sc->end = end;
                    sc->key = 0;
                    return 1;
                }
            }
        }
        return 0;
    }
    return 0;
}

static int
scan_url(Scan *sc, Py_ssize_t at)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    Py_ssize_t user = at + 3;
    Py_ssize_t colon = until(t, user, &self->url_user_stop, &sc->work);
    if (colon == user || colon >= t->n || rd(t, colon) != ':') {
        return 0;
    }
    Py_ssize_t start = colon + 1;
    Py_ssize_t end = until(t, start, &self->url_password_stop, &sc->work);
    if (end == start || end >= t->n || rd(t, end) != '@') {
        return 0;
    }
    sc->start = start;
    sc->end = end;
    sc->key = 0;
    return 1;
}

/* the name of the separator at `sep`: [*ns, *ne), quoted, a JSON key; 0 when there is none */
static int
name_before(Scan *sc, Py_ssize_t sep, Py_ssize_t *ns, Py_ssize_t *ne, int *quoted, int *json_key)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    Py_ssize_t at = sep - 1;
    while (at >= 0 && sep - 1 - at < self->max_spaces && rd(t, at) == ' ') {
        at--;
    }
    if (at < 0) {
        return 0;
    }
    Py_UCS4 c = rd(t, at);
    if (c == '"' || c == '\'') {
        Py_ssize_t floor = at - self->name_max - 1 > 0 ? at - self->name_max - 1 : 0;
        Py_ssize_t run = backslashes_before(t, at, floor);
        if (run > self->name_max) {
            return 0;
        }
        Py_ssize_t end = at - run;
        Py_ssize_t low = end - self->name_max - 1 > 0 ? end - self->name_max - 1 : 0;
        Py_ssize_t opening = end - 1;
        while (opening >= low && rd(t, opening) != c) {
            opening--;
        }
        sc->work += (unsigned long long)(at - opening + 1);
        if (opening < low) {
            return 0;
        }
        for (Py_ssize_t i = opening + 1; i < end; i++) {
            Py_UCS4 x = rd(t, i);
            if (x == '\n' || x == '\r') {
                return 0;
            }
        }
        Py_ssize_t ofloor = opening - run - 1 > 0 ? opening - run - 1 : 0;
        if (backslashes_before(t, opening, ofloor) != run) {
            return 0;
        }
        *ns = opening + 1;
        *ne = end;
        *quoted = 1;
        *json_key = c == '"' && run % 2 == 0;
        return 1;
    }
    if (!in_set(&self->name_chars, c)) {
        return 0;
    }
    Py_ssize_t start = at, low = at + 1 - self->name_max > 0 ? at + 1 - self->name_max : 0;
    if (t->kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *data = (const Py_UCS1 *)t->data;
        while (start > low && in_set(&self->name_chars, data[start - 1])) {
            start--;
        }
    }
    else {
        while (start > low && in_set(&self->name_chars, rd(t, start - 1))) {
            start--;
        }
    }
    sc->work += (unsigned long long)(at - start + 1);
    *ns = start;
    *ne = at + 1;
    *quoted = 0;
    *json_key = 0;
    return 1;
}

static int
json_literal(const RedactorObject *self, const Text *t, Py_ssize_t at)
{
    Py_UCS4 c = rd(t, at);
    if (c == '-' || (c >= '0' && c <= '9')) {
        return 1;
    }
    for (int k = 0; k < self->json_literals.n; k++) {
        Py_ssize_t len = self->json_literals.len[k];
        if (starts(t, at, self->json_literals.item[k], len)) {
            Py_ssize_t after = at + len;
            return after >= t->n || !in_set(&self->word, rd(t, after));
        }
    }
    return 0;
}

static Py_ssize_t
after_scheme(const RedactorObject *self, const Text *t, Py_ssize_t at)
{
    if (at >= t->n || !in_set(&self->scheme_first, rd(t, at))) {
        return at; /* no scheme starts with this character (either case) */
    }
    for (int w = 0; w < self->auth_schemes.n; w++) {
        Py_ssize_t len = self->auth_schemes.len[w];
        if (starts_folded(t, at, self->auth_schemes.item[w], len) && at + len < t->n && rd(t, at + len) == ' ') {
            Py_ssize_t end = at + len;
            while (end < t->n && rd(t, end) == ' ' && end - at - len < self->max_scheme_spaces) {
                end++;
            }
            return end;
        }
    }
    return at;
}

static Py_ssize_t
closing(Scan *sc, Py_ssize_t start, Py_UCS4 quote, Py_ssize_t level)
{
    const Text *t = sc->t;
    for (Py_ssize_t at = start; at < t->n; at++) {
        Py_UCS4 c = rd(t, at);
        if (c == '\n' || c == '\r') {
            sc->work += (unsigned long long)(at - start + 1);
            return at;
        }
        if (c == '"' || c == quote) {
            Py_ssize_t run = backslashes_before(t, at, start);
            if ((c == '"' && run % 2 == 0) || (c == quote && (run % 2 == 0 || run <= level))) {
                sc->work += (unsigned long long)(at - start + 1);
                return at - run;
            }
        }
    }
    sc->work += (unsigned long long)(t->n - start + 1);
    return t->n;
}

static int
scan_value(Scan *sc, Py_ssize_t at, int quoted_name, const CharSet *stop)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    if (at >= t->n) {
        return 0;
    }
    Py_UCS4 c = rd(t, at);
    if (c == '\\' || c == '"' || c == '\'') {
        Py_ssize_t quote = at;
        while (quote < t->n && rd(t, quote) == '\\' && quote - at <= self->name_max) {
            quote++;
        }
        if (quote >= t->n) {
            return 0;
        }
        Py_UCS4 q = rd(t, quote);
        if (q != '"' && q != '\'') {
            return 0;
        }
        Py_ssize_t start = quote + 1;
        Py_ssize_t end = closing(sc, start, q, quote - at);
        if (end <= start) {
            return 0;
        }
        sc->start = start;
        sc->end = end;
        sc->key = 0;
        return 1;
    }
    if (c == '{' || c == '[') {
        return 0;
    }
    if (quoted_name && json_literal(self, t, at)) {
        return 0;
    }
    Py_ssize_t start = after_scheme(self, t, at);
    Py_ssize_t end = until(t, start, stop, &sc->work);
    if (end <= start) {
        return 0;
    }
    sc->start = start;
    sc->end = end;
    sc->key = 0;
    return 1;
}

static int
scan_assignment(Scan *sc, Py_ssize_t at)
{
    RedactorObject *self = sc->self;
    const Text *t = sc->t;
    Py_ssize_t sep_len = 1;
    int colon = rd(t, at) == ':';
    if (!colon && at + 1 < t->n) {
        Py_UCS4 following = rd(t, at + 1);
        if (following == '=') {
            return 0;
        }
        if (following == '>') {
            sep_len = 2;
        }
    }
    Py_ssize_t ns, ne;
    int quoted, json_key;
    if (!name_before(sc, at, &ns, &ne, &quoted, &json_key)) {
        return 0;
    }
    if (json_key && !sc->json_keys) {
        return 0;
    }
    if (colon && !quoted && !(at + 1 < t->n && rd(t, at + 1) == ' ')) {
        return 0;
    }
    int secret = judge_name(self, t, ns, ne, 0);
    if (secret <= 0) {
        return secret;
    }
    Py_ssize_t value = at + sep_len, limit = value + self->max_spaces;
    while (value < t->n && value < limit && rd(t, value) == ' ') {
        value++;
    }
    return scan_value(sc, value, quoted, colon ? &self->stop_colon : &self->stop_equals);
}

static int
scan_flag(Scan *sc, Py_ssize_t at)
{
    RedactorObject *self = sc->self;
    const Text *t = sc->t;
    /* right after a span, the character before is its replacement's ']' (so redacting twice is redacting once) */
    if (!starts(t, at, "--", 2) || (at > 0 && at != sc->last_end && in_set(&self->name_chars, rd(t, at - 1)))) {
        return 0;
    }
    /* a name ends where another "--" begins: every character is read by one flag at most */
    Py_ssize_t end = at;
    while (end < t->n && in_set(&self->name_chars, rd(t, end)) && end - at <= self->name_max &&
           !(end >= at + 2 && starts(t, end, "--", 2))) {
        end++;
    }
    sc->work += (unsigned long long)(end - at + 1);
    if (end - at > self->name_max || !(end < t->n && rd(t, end) == ' ')) {
        return 0;
    }
    int secret = judge_name(self, t, at, end, 0);
    if (secret <= 0) {
        return secret;
    }
    Py_ssize_t value = end;
    while (value < t->n && value - end < self->max_spaces && rd(t, value) == ' ') {
        value++;
    }
    if (value < t->n && rd(t, value) == '-') {
        return 0;
    }
    return scan_value(sc, value, 0, &self->stop_equals);
}

/* what may start at a character: FIRST_SEP ('-', ':', '='), a token prefix, Bearer/Basic */
#define FIRST_SEP 1
#define FIRST_TOKEN 2
#define FIRST_BARE 4

/* one candidate position (its first character is interesting): 1 found, 0 not, -1 error */
static int
scan_at(Scan *sc, Blocks *blocks, Py_ssize_t i, Py_UCS4 c, Py_UCS4 next)
{
    const RedactorObject *self = sc->self;
    int found = 0;
    if (c == '-') {
        found = scan_pem(sc, blocks, i);
        if (found == 0) {
            found = scan_flag(sc, i);
        }
        return found;
    }
    if (c == ':') {
        return starts(sc->t, i + 1, "//", 2) ? scan_url(sc, i) : scan_assignment(sc, i);
    }
    if (c == '=') {
        return scan_assignment(sc, i);
    }
    if (next < 128 && self->pair_start[(c << 7) | next] != self->pair_start[((c << 7) | next) + 1]) {
        found = scan_token(sc, i);
    }
    if (found == 0 && (self->first[c] & FIRST_BARE)) {
        found = scan_bare(sc, i);
    }
    return found;
}

/* a span found at candidate `i` (sc->start..sc->end) that begins past the candidate leaves a gap
   (a flag's name, a URL's user, the spaces or scheme before a value): tokens in the gap are pushed
   first, then the span itself; -1 on error */
static int
scan_gap(Scan *sc, Py_ssize_t i, Spans *out)
{
    const RedactorObject *self = sc->self;
    const Text *t = sc->t;
    Py_ssize_t start = sc->start, end = sc->end;
    int key = sc->key;
    Py_ssize_t k = i + 1;
    while (k < start) {
        Py_UCS4 c = rd(t, k), next = k + 1 < t->n ? rd(t, k + 1) : 0x110000;
        int found = 0;
        if (c < 128 && next < 128 && self->pair_start[(c << 7) | next] != self->pair_start[((c << 7) | next) + 1]) {
            found = scan_token(sc, k);
            if (found < 0) {
                return -1;
            }
        }
        if (found && sc->end <= start) {
            if (spans_push(out, sc->start, sc->end, sc->key) < 0) {
                return -1;
            }
            sc->last_end = sc->end;
            k = sc->end;
        }
        else {
            k++;
        }
    }
    sc->work += (unsigned long long)(start > i ? start - i : 0);
    sc->start = start;
    sc->end = end;
    sc->key = key;
    sc->last_end = end;
    return spans_push(out, start, end, key);
}

/* the main loop for one PyUnicode kind: only interesting characters leave the tight loop */
#define DEFINE_SCAN_LOOP(NAME, CHAR)                                                                 \
    /* whether a token prefix (all of it) starts at i: the pair index, then the rest of each prefix */ \
    static inline int prefix_here_##NAME(const RedactorObject *self, const CHAR *text, Py_ssize_t n,  \
                                         Py_ssize_t i, Py_UCS4 c, Py_UCS4 next)                      \
    {                                                                                                \
        if (next >= 128) {                                                                           \
            return 0;                                                                                \
        }                                                                                            \
        uint32_t bit = trigram(c, next, i + 2 < n ? (Py_UCS4)text[i + 2] : 0);                       \
        if (!((self->trigrams[bit >> 6] >> (bit & 63)) & 1)) {                                       \
            return 0;                                                                                \
        }                                                                                            \
        int pair = (int)((c << 7) | next);                                                           \
        for (int32_t k = self->pair_start[pair]; k < self->pair_start[pair + 1]; k++) {              \
            const TokenRule *rule = &self->tok[self->pair_rules[k]];                                 \
            Py_ssize_t len = rule->prefix_len, j = 2;                                                \
            if (len > n - i) {                                                                       \
                continue;                                                                            \
            }                                                                                        \
            while (j < len && (Py_UCS4)text[i + j] == (unsigned char)rule->prefix[j]) {             \
                j++;                                                                                 \
            }                                                                                        \
            if (j == len) {                                                                          \
                return 1;                                                                            \
            }                                                                                        \
        }                                                                                            \
        return 0;                                                                                    \
    }                                                                                                \
    static int NAME(Scan *sc, Blocks *blocks, int first_only, Spans *out)                           \
    {                                                                                                \
        const CHAR *text = (const CHAR *)sc->t->data;                                                \
        const uint8_t *first = sc->self->first;                                                      \
        Py_ssize_t n = sc->t->n, i = 0;                                                              \
        while (i < n) {                                                                              \
            Py_UCS4 c = text[i];                                                                     \
            if (c >= 128 || !first[c]) {                                                             \
                i++;                                                                                 \
                continue;                                                                            \
            }                                                                                        \
            Py_UCS4 next = i + 1 < n ? (Py_UCS4)text[i + 1] : 0x110000;                              \
            if (first[c] == FIRST_TOKEN && !prefix_here_##NAME(sc->self, text, n, i, c, next)) {     \
                i++; /* no token prefix starts here: scan_token would find nothing */                \
                continue;                                                                            \
            }                                                                                        \
            int found = scan_at(sc, blocks, i, c, next);                                             \
            if (found < 0) {                                                                         \
                return -1;                                                                           \
            }                                                                                        \
            if (found) {                                                                             \
                if (scan_gap(sc, i, out) < 0) {                                                      \
                    return -1;                                                                       \
                }                                                                                    \
                if (first_only) {                                                                    \
                    break;                                                                           \
                }                                                                                    \
                i = sc->end > i ? sc->end : i + 1;                                                   \
            }                                                                                        \
            else {                                                                                   \
                i++;                                                                                 \
            }                                                                                        \
        }                                                                                            \
        sc->work += (unsigned long long)n;                                                           \
        return 0;                                                                                    \
    }

DEFINE_SCAN_LOOP(scan_loop_ucs1, Py_UCS1)
DEFINE_SCAN_LOOP(scan_loop_ucs2, Py_UCS2)
DEFINE_SCAN_LOOP(scan_loop_ucs4, Py_UCS4)

/* every span of the text, left to right; -1 on error */
static int
scan_text(RedactorObject *self, const Text *t, int json_keys, int first_only, Spans *out)
{
    Scan sc = {self, t, json_keys, 0, 0, 0, 0, -1};
    Blocks blocks = {-2, 0, -2};
    int rc;
    switch (t->kind) {
    case PyUnicode_1BYTE_KIND:
        rc = scan_loop_ucs1(&sc, &blocks, first_only, out);
        break;
    case PyUnicode_2BYTE_KIND:
        rc = scan_loop_ucs2(&sc, &blocks, first_only, out);
        break;
    default:
        rc = scan_loop_ucs4(&sc, &blocks, first_only, out);
        break;
    }
    self->work += sc.work;
    return rc;
}

/* ``text`` with the spans replaced: a new reference (``text`` itself when there are none) */
static PyObject *
apply_spans(RedactorObject *self, PyObject *text, const Text *t, const Spans *spans)
{
    if (spans->size == 0) {
        return Py_NewRef(text);
    }
    Py_ssize_t length = 0, pos = 0;
    Py_UCS4 maxchar = 127;
    int ascii = PyUnicode_IS_ASCII(text);
    for (Py_ssize_t k = 0; k <= spans->size; k++) {
        Py_ssize_t stop = k < spans->size ? spans->items[k].start : t->n;
        length += stop - pos;
        if (!ascii) {
            for (Py_ssize_t i = pos; i < stop; i++) {
                Py_UCS4 c = rd(t, i);
                if (c > maxchar) {
                    maxchar = c;
                }
            }
        }
        if (k < spans->size) {
            PyObject *rep = spans->items[k].key ? self->redacted_key : self->redacted;
            length += PyUnicode_GET_LENGTH(rep);
            pos = spans->items[k].end;
        }
    }
    PyObject *out = PyUnicode_New(length, maxchar);
    if (out == NULL) {
        return NULL;
    }
    /* written by hand: every kept character fits `maxchar`, and the replacements are ASCII */
    int okind = PyUnicode_KIND(out);
    void *odata = PyUnicode_DATA(out);
    Py_ssize_t w = 0;
    pos = 0;
    for (Py_ssize_t k = 0; k <= spans->size; k++) {
        Py_ssize_t stop = k < spans->size ? spans->items[k].start : t->n;
        if (okind == t->kind) {
            memcpy((char *)odata + w * okind, (const char *)t->data + pos * t->kind, (size_t)((stop - pos) * okind));
            w += stop - pos;
        }
        else {
            for (Py_ssize_t i = pos; i < stop; i++) {
                PyUnicode_WRITE(okind, odata, w++, rd(t, i));
            }
        }
        if (k < spans->size) {
            PyObject *rep = spans->items[k].key ? self->redacted_key : self->redacted;
            const Py_UCS1 *rdata = PyUnicode_1BYTE_DATA(rep);
            Py_ssize_t rlen = PyUnicode_GET_LENGTH(rep);
            if (okind == PyUnicode_1BYTE_KIND) {
                memcpy((Py_UCS1 *)odata + w, rdata, (size_t)rlen);
                w += rlen;
            }
            else {
                for (Py_ssize_t i = 0; i < rlen; i++) {
                    PyUnicode_WRITE(okind, odata, w++, rdata[i]);
                }
            }
            pos = spans->items[k].end;
        }
    }
    assert(w == length);
    return out;
}

static PyObject *
redact_str(RedactorObject *self, PyObject *text, int json_keys)
{
    Text t;
    if (text_of(text, &t) < 0) {
        return NULL;
    }
    Spans spans = {NULL, 0, 0};
    PyObject *out = NULL;
    if (scan_text(self, &t, json_keys, 0, &spans) == 0) {
        out = apply_spans(self, text, &t, &spans);
    }
    PyMem_Free(spans.items);
    return out;
}

/* 1 when the engine would change the text, 0 when not, -1 on error */
static int
str_changes(RedactorObject *self, PyObject *text, int json_keys)
{
    Text t;
    if (text_of(text, &t) < 0) {
        return -1;
    }
    Spans spans = {NULL, 0, 0};
    int rc = scan_text(self, &t, json_keys, 1, &spans);
    int found = spans.size > 0;
    PyMem_Free(spans.items);
    return rc < 0 ? -1 : found;
}

/* -- structured values --------------------------------------------------------------------------- */

static int
key_is(RedactorObject *self, PyObject *key, int value_rule)
{
    Text t;
    if (text_of(key, &t) < 0) {
        return -1;
    }
    return judge_name(self, &t, 0, t.n, value_rule);
}

typedef struct {
    PyObject *item;   /* borrowed (the input) */
    PyObject *parent; /* borrowed (an output container, owned by its own parent or the root) */
    PyObject *key;    /* borrowed: the dict key, or NULL for a list slot */
    Py_ssize_t index;
    int secret;
    Py_ssize_t depth;
} WalkFrame;

typedef struct {
    WalkFrame *items;
    Py_ssize_t size, cap;
} WalkStack;

static int
walk_push(WalkStack *st, WalkFrame frame)
{
    if (st->size == st->cap) {
        Py_ssize_t cap = st->cap ? st->cap * 2 : 64;
        WalkFrame *items = PyMem_Realloc(st->items, sizeof(WalkFrame) * (size_t)cap);
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        st->items = items;
        st->cap = cap;
    }
    st->items[st->size++] = frame;
    return 0;
}

static inline int
plain_scalar(PyObject *obj)
{
    return obj == Py_None || PyBool_Check(obj) || PyLong_Check(obj) || PyFloat_Check(obj);
}

/* put `out` (a new reference, stolen) where the frame says */
static int
walk_place(const WalkFrame *frame, PyObject *out)
{
    if (frame->key == NULL) {
        PyList_SET_ITEM(frame->parent, frame->index, out);
        return 0;
    }
    int rc = PyDict_SetItem(frame->parent, frame->key, out);
    Py_DECREF(out);
    return rc;
}

static PyObject *
redactor_redact_value(RedactorObject *self, PyObject *args)
{
    PyObject *value;
    int keep_types = 0;
    if (!PyArg_ParseTuple(args, "O|p:redact_value", &value, &keep_types)) {
        return NULL;
    }
    PyObject *root = PyList_New(1);
    if (root == NULL) {
        return NULL;
    }
    WalkStack st = {NULL, 0, 0};
    int verdict = walk_push(&st, (WalkFrame){value, root, NULL, 0, 0, 0}) < 0 ? -1 : 1;
    while (verdict == 1 && st.size > 0) {
        WalkFrame frame = st.items[--st.size];
        PyObject *item = frame.item;
        PyObject *out = NULL;
        if (frame.depth > self->max_walk_depth) {
            out = Py_NewRef(self->too_deep);
        }
        else if (PyUnicode_CheckExact(item)) {
            out = frame.secret ? Py_NewRef(self->redacted) : redact_str(self, item, 1);
        }
        else if (PyDict_CheckExact(item)) {
            out = PyDict_New();
            Py_ssize_t pos = 0;
            PyObject *key, *child;
            while (out != NULL && verdict == 1 && PyDict_Next(item, &pos, &key, &child)) {
                if (!PyUnicode_CheckExact(key)) {
                    verdict = 0;
                    break;
                }
                int secret = frame.secret;
                if (!secret) {
                    secret = key_is(self, key, 0);
                    if (secret < 0) {
                        verdict = -1;
                        break;
                    }
                }
                if (secret && !keep_types) {
                    if (PyDict_SetItem(out, key, self->redacted) < 0) {
                        verdict = -1;
                    }
                    continue;
                }
                if (PyDict_SetItem(out, key, Py_None) < 0 ||
                    walk_push(&st, (WalkFrame){child, out, key, 0, secret, frame.depth + 1}) < 0) {
                    verdict = -1;
                }
            }
            if (out != NULL && verdict != 1) {
                Py_DECREF(out);
                out = NULL;
            }
        }
        else if (PyList_CheckExact(item) || PyTuple_CheckExact(item)) {
            Py_ssize_t n = PySequence_Fast_GET_SIZE(item);
            PyObject **items = PySequence_Fast_ITEMS(item);
            out = PyList_New(n);
            for (Py_ssize_t i = n - 1; out != NULL && i >= 0; i--) {
                if (walk_push(&st, (WalkFrame){items[i], out, NULL, i, frame.secret, frame.depth + 1}) < 0) {
                    verdict = -1;
                    Py_DECREF(out);
                    out = NULL;
                }
            }
        }
        else if (plain_scalar(item)) {
            out = Py_NewRef(item);
        }
        else {
            verdict = 0; /* str or container subclasses, other objects: the Python walk decides */
            break;
        }
        if (verdict != 1) {
            break;
        }
        if (out == NULL || walk_place(&frame, out) < 0) {
            verdict = -1;
        }
    }
    PyMem_Free(st.items);
    if (verdict != 1) {
        Py_DECREF(root);
        if (verdict < 0) {
            return NULL;
        }
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *result = Py_NewRef(PyList_GET_ITEM(root, 0));
    Py_DECREF(root);
    return result;
}

typedef struct {
    PyObject *node;  /* borrowed */
    Py_ssize_t crumb; /* index of this node's path entry (-1: the root) */
    int named;
    Py_ssize_t depth;
} FindFrame;

typedef struct {
    Py_ssize_t parent;
    PyObject *key; /* borrowed dict key, or NULL for a list index */
    Py_ssize_t index;
} Crumb;

static PyObject *
redactor_find_secret(RedactorObject *self, PyObject *value)
{
    FindFrame *stack = NULL;
    Crumb *crumbs = NULL;
    Py_ssize_t size = 0, cap = 0, ncrumbs = 0, crumbs_cap = 0;
    int verdict = 2; /* 2: going, 1: found, 0: nothing, 3: not plain, -1: error */
    const char *why = NULL;
    Py_ssize_t found_crumb = -1;
#define PUSH_FRAME(NODE, CRUMB, NAMED, DEPTH)                                                                       \
    do {                                                                                                          \
        if (size == cap) {                                                                                        \
            Py_ssize_t c2 = cap ? cap * 2 : 64;                                                                   \
            FindFrame *grown = PyMem_Realloc(stack, sizeof(FindFrame) * (size_t)c2);                              \
            if (grown == NULL) {                                                                                  \
                PyErr_NoMemory();                                                                                 \
                verdict = -1;                                                                                     \
                break;                                                                                            \
            }                                                                                                     \
            stack = grown;                                                                                        \
            cap = c2;                                                                                             \
        }                                                                                                         \
        stack[size++] = (FindFrame){(NODE), (CRUMB), (NAMED), (DEPTH)};                                           \
    } while (0)
#define PUSH_CRUMB(PARENT, KEY, INDEX)                                                                             \
    do {                                                                                                          \
        if (ncrumbs == crumbs_cap) {                                                                              \
            Py_ssize_t c2 = crumbs_cap ? crumbs_cap * 2 : 64;                                                     \
            Crumb *grown = PyMem_Realloc(crumbs, sizeof(Crumb) * (size_t)c2);                                     \
            if (grown == NULL) {                                                                                  \
                PyErr_NoMemory();                                                                                 \
                verdict = -1;                                                                                     \
                break;                                                                                            \
            }                                                                                                     \
            crumbs = grown;                                                                                       \
            crumbs_cap = c2;                                                                                      \
        }                                                                                                         \
        crumbs[ncrumbs++] = (Crumb){(PARENT), (KEY), (INDEX)};                                                    \
    } while (0)

    PUSH_FRAME(value, -1, 0, 0);
    while (verdict == 2 && size > 0) {
        FindFrame frame = stack[--size];
        PyObject *node = frame.node;
        if (frame.depth > self->max_walk_depth) {
            continue;
        }
        if (PyUnicode_CheckExact(node)) {
            if (frame.named && PyUnicode_GET_LENGTH(node) > 0) {
                verdict = 1;
                why = "secret field name";
                found_crumb = frame.crumb;
                break;
            }
            int changed = str_changes(self, node, 1);
            if (changed < 0) {
                verdict = -1;
            }
            else if (changed) {
                verdict = 1;
                why = "secret-looking value";
                found_crumb = frame.crumb;
            }
        }
        else if (PyDict_CheckExact(node)) {
            Py_ssize_t n = PyDict_GET_SIZE(node);
            Py_ssize_t first = size;
            Py_ssize_t pos = 0;
            PyObject *key, *child;
            while (verdict == 2 && PyDict_Next(node, &pos, &key, &child)) {
                if (!PyUnicode_CheckExact(key)) {
                    verdict = 3;
                    break;
                }
                int named = key_is(self, key, 1);
                if (named < 0) {
                    verdict = -1;
                    break;
                }
                Py_ssize_t crumb = ncrumbs;
                PUSH_CRUMB(frame.crumb, key, 0);
                if (verdict != 2) {
                    break;
                }
                PUSH_FRAME(child, crumb, named, frame.depth + 1);
            }
            if (verdict == 2) { /* children were pushed in order: reverse them so the first pops first */
                for (Py_ssize_t a = first, b = size - 1; a < b; a++, b--) {
                    FindFrame tmp = stack[a];
                    stack[a] = stack[b];
                    stack[b] = tmp;
                }
            }
            (void)n;
        }
        else if (PyList_CheckExact(node) || PyTuple_CheckExact(node)) {
            Py_ssize_t n = PySequence_Fast_GET_SIZE(node);
            PyObject **items = PySequence_Fast_ITEMS(node);
            for (Py_ssize_t i = n - 1; verdict == 2 && i >= 0; i--) {
                Py_ssize_t crumb = ncrumbs;
                PUSH_CRUMB(frame.crumb, NULL, i);
                if (verdict != 2) {
                    break;
                }
                PUSH_FRAME(items[i], crumb, 0, frame.depth + 1);
            }
        }
        else if (PyUnicode_Check(node) || PyDict_Check(node) || PyList_Check(node) || PyTuple_Check(node)) {
            verdict = 3; /* subclasses: the Python walk decides */
        }
        /* anything else is not examined */
    }
#undef PUSH_FRAME
#undef PUSH_CRUMB
    PyObject *result = NULL;
    if (verdict == 1) {
        PyObject *path = PyList_New(0);
        for (Py_ssize_t c = found_crumb; path != NULL && c >= 0; c = crumbs[c].parent) {
            PyObject *key = crumbs[c].key ? Py_NewRef(crumbs[c].key) : PyLong_FromSsize_t(crumbs[c].index);
            if (key == NULL || PyList_Append(path, key) < 0) {
                Py_XDECREF(key);
                Py_CLEAR(path);
                break;
            }
            Py_DECREF(key);
        }
        if (path != NULL && PyList_Reverse(path) == 0) {
            result = Py_BuildValue("(Ns)", path, why);
        }
        else {
            Py_XDECREF(path);
        }
    }
    else if (verdict == 2 || verdict == 0) {
        result = Py_NewRef(Py_None);
    }
    else if (verdict == 3) {
        result = Py_NewRef(Py_NotImplemented);
    }
    PyMem_Free(stack);
    PyMem_Free(crumbs);
    return result;
}

/* -- the object --------------------------------------------------------------------------------- */

static int
config_item(PyObject *config, const char *name, PyObject **out)
{
    *out = PyDict_GetItemString(config, name); /* borrowed */
    if (*out == NULL) {
        PyErr_Format(PyExc_KeyError, "Redactor config lacks %s", name);
        return -1;
    }
    return 0;
}

static char *
ascii_copy(PyObject *str, Py_ssize_t *len)
{
    if (!PyUnicode_Check(str)) {
        PyErr_SetString(PyExc_TypeError, "Redactor config: expected str");
        return NULL;
    }
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(str, &n);
    if (utf8 == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((unsigned char)utf8[i] >= 128) {
            PyErr_SetString(PyExc_ValueError, "Redactor config: strings must be ASCII");
            return NULL;
        }
    }
    char *copy = PyMem_Malloc((size_t)n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, utf8, (size_t)n + 1);
    if (len) {
        *len = n;
    }
    return copy;
}

static int
config_set(PyObject *config, const char *name, CharSet *set)
{
    PyObject *item;
    if (config_item(config, name, &item) < 0) {
        return -1;
    }
    Py_ssize_t n;
    char *chars = ascii_copy(item, &n);
    if (chars == NULL) {
        return -1;
    }
    set->lo = set->hi = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)chars[i];
        if (c < 64) {
            set->lo |= (uint64_t)1 << c;
        }
        else {
            set->hi |= (uint64_t)1 << (c - 64);
        }
    }
    PyMem_Free(chars);
    return 0;
}

static int
config_str(PyObject *config, const char *name, char **out, Py_ssize_t *len)
{
    PyObject *item;
    if (config_item(config, name, &item) < 0) {
        return -1;
    }
    *out = ascii_copy(item, len);
    return *out == NULL ? -1 : 0;
}

static int
config_int(PyObject *config, const char *name, Py_ssize_t *out)
{
    PyObject *item;
    if (config_item(config, name, &item) < 0) {
        return -1;
    }
    *out = PyLong_AsSsize_t(item);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
config_list(PyObject *config, const char *name, WordList *list)
{
    PyObject *item;
    if (config_item(config, name, &item) < 0) {
        return -1;
    }
    PyObject *seq = PySequence_Fast(item, "Redactor config: expected a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_LIST) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "Redactor config: at most %d %s", MAX_LIST, name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        list->item[list->n] = ascii_copy(PySequence_Fast_GET_ITEM(seq, i), &list->len[list->n]);
        if (list->item[list->n] == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        if (list->len[list->n] == 0) {
            PyMem_Free(list->item[list->n]);
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "Redactor config: empty word in %s", name);
            return -1;
        }
        if (list->len[list->n] < 64) {
            list->lengths |= (uint64_t)1 << list->len[list->n];
        }
        list->by_first[(unsigned char)list->item[list->n][0]] |= (uint64_t)1 << list->n;
        list->n++;
    }
    Py_DECREF(seq);
    return 0;
}

static void
free_list(WordList *list)
{
    for (int i = 0; i < list->n; i++) {
        PyMem_Free(list->item[i]);
    }
    list->n = 0;
}

static int
config_tokens(RedactorObject *self, PyObject *config)
{
    PyObject *item;
    if (config_item(config, "tokens", &item) < 0) {
        return -1;
    }
    PyObject *seq = PySequence_Fast(item, "Redactor config: tokens must be a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->tok = PyMem_Calloc((size_t)(n ? n : 1), sizeof(TokenRule));
    if (self->tok == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && rc == 0; i++) {
        PyObject *prefix, *blocked, *segments;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "UUO:token", &prefix, &blocked, &segments)) {
            rc = -1;
            break;
        }
        TokenRule *rule = &self->tok[self->ntok++];
        rule->prefix = ascii_copy(prefix, &rule->prefix_len);
        PyObject *tmp = PyDict_New();
        if (rule->prefix == NULL || tmp == NULL || PyDict_SetItemString(tmp, "b", blocked) < 0 ||
            config_set(tmp, "b", &rule->blocked) < 0) {
            Py_XDECREF(tmp);
            rc = -1;
            break;
        }
        if (rule->prefix_len < 2) {
            Py_DECREF(tmp);
            PyErr_SetString(PyExc_ValueError, "Redactor config: token prefixes have 2+ characters");
            rc = -1;
            break;
        }
        PyObject *segs = PySequence_Fast(segments, "Redactor config: segments must be a sequence");
        if (segs == NULL || PySequence_Fast_GET_SIZE(segs) > MAX_SEGMENTS || PySequence_Fast_GET_SIZE(segs) < 1) {
            if (segs != NULL) {
                PyErr_SetString(PyExc_ValueError, "Redactor config: 1 to 4 segments per token rule");
            }
            Py_XDECREF(segs);
            Py_DECREF(tmp);
            rc = -1;
            break;
        }
        for (Py_ssize_t s = 0; s < PySequence_Fast_GET_SIZE(segs) && rc == 0; s++) {
            PyObject *lead, *chars;
            Segment *seg = &rule->seg[rule->nseg];
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(segs, s), "UUnn:segment", &lead, &chars, &seg->min,
                                  &seg->max) ||
                PyDict_SetItemString(tmp, "c", chars) < 0 || config_set(tmp, "c", &seg->chars) < 0 ||
                (seg->lead = ascii_copy(lead, &seg->lead_len)) == NULL) {
                rc = -1;
                break;
            }
            rule->nseg++;
        }
        Py_DECREF(segs);
        Py_DECREF(tmp);
    }
    Py_DECREF(seq);
    if (rc < 0) {
        return -1;
    }
    /* pair index: for each first two characters, the rules in config order */
    self->pair_start = PyMem_Calloc(PAIRS + 1, sizeof(int32_t));
    self->pair_rules = PyMem_Calloc((size_t)(self->ntok ? self->ntok : 1), sizeof(int));
    if (self->pair_start == NULL || self->pair_rules == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < self->ntok; i++) {
        unsigned a = (unsigned char)self->tok[i].prefix[0], b = (unsigned char)self->tok[i].prefix[1];
        self->pair_start[((a << 7) | b) + 1]++;
        self->first[a] |= FIRST_TOKEN;
    }
    for (int p = 0; p < PAIRS; p++) {
        self->pair_start[p + 1] += self->pair_start[p];
    }
    int32_t *fill = PyMem_Calloc(PAIRS, sizeof(int32_t));
    if (fill == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < self->ntok; i++) {
        unsigned a = (unsigned char)self->tok[i].prefix[0], b = (unsigned char)self->tok[i].prefix[1];
        int pair = (int)((a << 7) | b);
        self->pair_rules[self->pair_start[pair] + fill[pair]++] = i;
    }
    PyMem_Free(fill);
    for (int i = 0; i < self->ntok; i++) {
        const char *p = self->tok[i].prefix;
        unsigned a = (unsigned char)p[0], b = (unsigned char)p[1];
        for (unsigned c = 0; c < 128; c++) {
            if (self->tok[i].prefix_len == 2 || c == (unsigned char)p[2]) {
                uint32_t bit = trigram(a, b, c);
                self->trigrams[bit >> 6] |= (uint64_t)1 << (bit & 63);
            }
        }
    }
    return 0;
}

static void
redactor_dealloc(RedactorObject *self)
{
    for (int i = 0; i < self->ntok; i++) {
        PyMem_Free(self->tok[i].prefix);
        for (int s = 0; s < self->tok[i].nseg; s++) {
            PyMem_Free(self->tok[i].seg[s].lead);
        }
    }
    PyMem_Free(self->tok);
    PyMem_Free(self->pair_start);
    PyMem_Free(self->pair_rules);
    WordList *lists[] = {&self->deny, &self->safe, &self->partials, &self->words, &self->value_endings,
                         &self->auth_schemes, &self->bare_schemes, &self->pem_suffixes, &self->json_literals};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        free_list(lists[i]);
    }
    PyMem_Free(self->pem_begin);
    PyMem_Free(self->pem_end);
    PyMem_Free(self->pem_dashes);
    Py_XDECREF(self->redacted);
    Py_XDECREF(self->redacted_key);
    Py_XDECREF(self->too_deep);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
redactor_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *config;
    if (!PyArg_ParseTuple(args, "O!:Redactor", &PyDict_Type, &config)) {
        return NULL;
    }
    RedactorObject *self = (RedactorObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    PyObject *item;
    int failed =
        config_tokens(self, config) < 0 || config_list(config, "deny", &self->deny) < 0 ||
        config_list(config, "safe", &self->safe) < 0 || config_list(config, "partials", &self->partials) < 0 ||
        config_list(config, "words", &self->words) < 0 ||
        config_list(config, "value_endings", &self->value_endings) < 0 ||
        config_list(config, "auth_schemes", &self->auth_schemes) < 0 ||
        config_list(config, "bare_schemes", &self->bare_schemes) < 0 ||
        config_list(config, "pem_suffixes", &self->pem_suffixes) < 0 ||
        config_list(config, "json_literals", &self->json_literals) < 0 ||
        config_str(config, "pem_begin", &self->pem_begin, &self->pem_begin_len) < 0 ||
        config_str(config, "pem_end", &self->pem_end, &self->pem_end_len) < 0 ||
        config_str(config, "pem_dashes", &self->pem_dashes, &self->pem_dashes_len) < 0 ||
        config_int(config, "pem_max_header", &self->pem_max_header) < 0 ||
        config_int(config, "pem_max_label", &self->pem_max_label) < 0 ||
        config_int(config, "name_max", &self->name_max) < 0 ||
        config_int(config, "max_spaces", &self->max_spaces) < 0 ||
        config_int(config, "max_scheme_spaces", &self->max_scheme_spaces) < 0 ||
        config_int(config, "max_walk_depth", &self->max_walk_depth) < 0 ||
        config_set(config, "name_chars", &self->name_chars) < 0 ||
        config_set(config, "credential_chars", &self->credential_chars) < 0 ||
        config_set(config, "pem_header_chars", &self->pem_header_chars) < 0 ||
        config_set(config, "stop_equals", &self->stop_equals) < 0 ||
        config_set(config, "stop_colon", &self->stop_colon) < 0 ||
        config_set(config, "url_user_stop", &self->url_user_stop) < 0 ||
        config_set(config, "url_password_stop", &self->url_password_stop) < 0 ||
        config_set(config, "ascii_ws", &self->ascii_ws) < 0 || config_set(config, "word", &self->word) < 0;
    if (!failed) {
        PyObject **targets[] = {&self->redacted, &self->redacted_key, &self->too_deep};
        const char *names[] = {"redacted", "redacted_key", "too_deep"};
        for (int i = 0; i < 3 && !failed; i++) {
            failed = config_item(config, names[i], &item) < 0;
            if (!failed && (!PyUnicode_CheckExact(item) || !PyUnicode_IS_ASCII(item))) {
                PyErr_Format(PyExc_TypeError, "Redactor config: %s must be an ASCII str", names[i]);
                failed = 1;
            }
            if (!failed) {
                *targets[i] = Py_NewRef(item);
            }
        }
    }
    if (!failed && (self->pem_begin_len < 1 || self->pem_dashes_len < 1)) {
        PyErr_SetString(PyExc_ValueError, "Redactor config: empty PEM markers");
        failed = 1;
    }
    if (failed) {
        Py_DECREF(self);
        return NULL;
    }
    if (self->pem_begin[0] != '-') {
        PyErr_SetString(PyExc_ValueError, "Redactor config: the PEM marker starts with '-'");
        Py_DECREF(self);
        return NULL;
    }
    for (int w = 0; w < self->auth_schemes.n; w++) {
        unsigned c = (unsigned char)self->auth_schemes.item[w][0];
        unsigned cases[2] = {c, (c >= 'a' && c <= 'z') ? c - ('a' - 'A') : (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c};
        for (int k = 0; k < 2; k++) {
            if (cases[k] < 64) {
                self->scheme_first.lo |= (uint64_t)1 << cases[k];
            }
            else if (cases[k] < 128) {
                self->scheme_first.hi |= (uint64_t)1 << (cases[k] - 64);
            }
        }
    }
    self->first['-'] |= FIRST_SEP;
    self->first[':'] |= FIRST_SEP;
    self->first['='] |= FIRST_SEP;
    for (int w = 0; w < self->bare_schemes.n; w++) {
        unsigned c = (unsigned char)self->bare_schemes.item[w][0];
        self->first[ascii_lower(c)] |= FIRST_BARE;
        if (c >= 'a' && c <= 'z') {
            self->first[c - ('a' - 'A')] |= FIRST_BARE;
        }
    }
    return (PyObject *)self;
}

static PyObject *
redactor_redact_text(RedactorObject *self, PyObject *args)
{
    PyObject *text;
    int json_keys = 1;
    if (!PyArg_ParseTuple(args, "U|p:redact_text", &text, &json_keys)) {
        return NULL;
    }
    if (!PyUnicode_CheckExact(text)) {
        PyErr_SetString(PyExc_TypeError, "redact_text takes an exact str");
        return NULL;
    }
    return redact_str(self, text, json_keys);
}

static PyObject *
redactor_changes(RedactorObject *self, PyObject *args)
{
    PyObject *text;
    int json_keys = 1;
    if (!PyArg_ParseTuple(args, "U|p:changes", &text, &json_keys)) {
        return NULL;
    }
    int changed = str_changes(self, text, json_keys);
    return changed < 0 ? NULL : PyBool_FromLong(changed);
}

static PyObject *
redactor_judge(RedactorObject *self, PyObject *name, int value_rule)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a field name must be str");
        return NULL;
    }
    int verdict = key_is(self, name, value_rule);
    return verdict < 0 ? NULL : PyBool_FromLong(verdict);
}

static PyObject *
redactor_is_secret_field(RedactorObject *self, PyObject *name)
{
    return redactor_judge(self, name, 0);
}

static PyObject *
redactor_holds_secret_value(RedactorObject *self, PyObject *name)
{
    return redactor_judge(self, name, 1);
}

static PyObject *
redactor_work(RedactorObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(self->work);
}

static PyMethodDef redactor_methods[] = {
    {"redact_text", (PyCFunction)redactor_redact_text, METH_VARARGS,
     "redact_text(text, json_keys=True) -> str: the text redacted (the same object when nothing changes)"},
    {"changes", (PyCFunction)redactor_changes, METH_VARARGS,
     "changes(text, json_keys=True) -> bool: whether redact_text would change the text"},
    {"is_secret_field", (PyCFunction)redactor_is_secret_field, METH_O, "is_secret_field(name) -> bool"},
    {"holds_secret_value", (PyCFunction)redactor_holds_secret_value, METH_O, "holds_secret_value(name) -> bool"},
    {"redact_value", (PyCFunction)redactor_redact_value, METH_VARARGS,
     "redact_value(value, keep_types=False): the redacted copy of a plain JSON value, or NotImplemented"},
    {"find_secret", (PyCFunction)redactor_find_secret, METH_O,
     "find_secret(value) -> (path, why) | None | NotImplemented (a value that is not plain JSON)"},
    {"work", (PyCFunction)redactor_work, METH_NOARGS, "work() -> int: characters examined so far"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot redactor_slots[] = {
    {Py_tp_new, redactor_new},
    {Py_tp_dealloc, redactor_dealloc},
    {Py_tp_methods, redactor_methods},
    {Py_tp_doc, "Redactor(config): the redaction engine of shared.security.redaction, in C"},
    {0, NULL},
};

static PyType_Spec redactor_spec = {
    .name = "shared._native.Redactor",
    .basicsize = sizeof(RedactorObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = redactor_slots,
};

/* --------------------------------------------------------------------------------------------- */

/* count_containers(data): the objects and arrays of a JSON text, '{' and '[' outside its strings,
   counted on the bytes before anything is parsed (one pass, no allocation) */
static PyObject *
native_count_containers(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len, count = 0;
    int in_string = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (in_string) {
            if (c == '\\') {
                i++; /* the escaped character, whatever it is */
            }
            else if (c == '"') {
                in_string = 0;
            }
        }
        else if (c == '"') {
            in_string = 1;
        }
        else if (c == '{' || c == '[') {
            count++;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef native_methods[] = {
    {"count_containers", native_count_containers, METH_O,
     "count_containers(data) -> int: the objects and arrays of a JSON text ('{' and '[' outside strings)"},
    {"check_limits", native_check_limits, METH_VARARGS,
     "check_limits(value, max_depth, max_string, max_array) -> bool: True when value is plain JSON "
     "(exact dict/list/str/int/float/bool/None, str keys) within the limits; False = look closer"},
    {NULL, NULL, 0, NULL},
};

static int
native_exec(PyObject *module)
{
    PyObject *redactor = PyType_FromModuleAndSpec(module, &redactor_spec, NULL);
    if (redactor == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "Redactor", redactor);
    Py_DECREF(redactor);
    return rc;
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shared._native",
    .m_doc = "Optional C fast paths for payload limits and redaction (see shared/security/).",
    .m_size = 0,
    .m_methods = native_methods,
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModuleDef_Init(&native_module);
}
