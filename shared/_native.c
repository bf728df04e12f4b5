/* shared._native: optional C fast paths for the security gate (payload limits and redaction).
 *
 * Every function here is a *pre-check*: it answers the common case quickly and says "look closer"
 * otherwise, so the pure-Python code in shared/security/ stays the one that decides and explains.
 * Nothing here runs Python code while it walks a value (only exact built-in types are inspected,
 * and only exact str keys go into a set), so borrowed references stay valid for the whole walk.
 * No recursion: walks keep an explicit stack on the heap.
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
 * collect_keys(value) -> set[str] | None | False
 */

#define SEEN_SLOTS 256 /* direct-mapped cache of keys already added (documents repeat their keys) */

static inline size_t
seen_slot(PyObject *key)
{
    uintptr_t p = (uintptr_t)key;
    return (size_t)((p >> 4) ^ (p >> 12)) & (SEEN_SLOTS - 1);
}

/* 1: a plain scalar, 2: a plain container (walk it), 0: not a plain JSON type */
static inline int
plain_kind(PyObject *obj)
{
    if (PyUnicode_CheckExact(obj) || obj == Py_None || PyLong_CheckExact(obj) || PyFloat_CheckExact(obj) ||
        PyBool_Check(obj)) {
        return 1;
    }
    if (PyDict_CheckExact(obj) || PyList_CheckExact(obj) || PyTuple_CheckExact(obj)) {
        return 2;
    }
    return 0;
}

/* 1: fine, 0: not plain, -1: error set */
static inline int
collect_child(Stack *st, PyObject *obj, Py_ssize_t level)
{
    switch (plain_kind(obj)) {
    case 1:
        return 1;
    case 2:
        return stack_push(st, obj, level) < 0 ? -1 : 1;
    default:
        return 0;
    }
}

static PyObject *
native_collect_keys(PyObject *module, PyObject *value)
{
    PyObject *keys = PySet_New(NULL);
    if (keys == NULL) {
        return NULL;
    }
    PyObject *seen[SEEN_SLOTS];
    memset(seen, 0, sizeof(seen));
    Stack st = {NULL, 0, 0};
    /* 1: keys, 0: a value of a non-plain type (None), 2: undecided (False), -1: error set */
    int verdict = collect_child(&st, value, 1);
    while (verdict == 1 && st.size > 0) {
        Frame frame = st.items[--st.size];
        PyObject *node = frame.obj;
        if (frame.level >= HARD_DEPTH_CAP) {
            verdict = 2; /* a cycle, most likely: let Python decide */
            break;
        }
        if (PyDict_CheckExact(node)) {
            Py_ssize_t pos = 0;
            PyObject *key, *item;
            while (verdict == 1 && PyDict_Next(node, &pos, &key, &item)) {
                if (!PyUnicode_CheckExact(key)) {
                    verdict = 2; /* hashing it could run Python code: let Python collect */
                    break;
                }
                size_t slot = seen_slot(key);
                if (seen[slot] != key) {
                    if (PySet_Add(keys, key) < 0) {
                        verdict = -1;
                        break;
                    }
                    seen[slot] = key;
                }
                verdict = collect_child(&st, item, frame.level + 1);
            }
        }
        else {
            Py_ssize_t n = PySequence_Fast_GET_SIZE(node); /* an exact list or tuple */
            PyObject **items = PySequence_Fast_ITEMS(node);
            for (Py_ssize_t i = 0; verdict == 1 && i < n; i++) {
                verdict = collect_child(&st, items[i], frame.level + 1);
            }
        }
    }
    PyMem_Free(st.items);
    if (verdict == 1) {
        return keys;
    }
    Py_DECREF(keys);
    switch (verdict) {
    case 0:
        Py_RETURN_NONE;
    case 2:
        Py_RETURN_FALSE;
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Matcher(words, fold_words): which of up to 64 ASCII keywords occur in a str, in one pass.
 *
 * A 128x128 table maps the first two characters of a position to a group of candidate words;
 * only candidates are compared further. fold_words (lower-case) are compared with ASCII letters
 * lower-cased, which equals searching text.lower() when the text is ASCII (or already lower).
 */

#define MAX_WORDS 64
#define MAX_GROUPS 255

typedef struct {
    PyObject_HEAD
    int nwords;
    uint64_t fold_mask;
    uint64_t all_mask;
    Py_ssize_t length[MAX_WORDS];
    char *word[MAX_WORDS];
    PyObject *words; /* tuple: words then fold_words, as given */
    uint8_t pair[128 * 128];
    uint64_t group[MAX_GROUPS + 1];
} MatcherObject;

static inline unsigned
ascii_lower(unsigned c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int
matcher_add_pair(MatcherObject *self, unsigned a, unsigned b, int bit, int *ngroups)
{
    unsigned index = (a << 7) | b;
    if (self->pair[index] == 0) {
        if (*ngroups >= MAX_GROUPS) {
            PyErr_SetString(PyExc_ValueError, "too many distinct keyword prefixes");
            return -1;
        }
        self->pair[index] = (uint8_t)++*ngroups;
    }
    self->group[self->pair[index]] |= (uint64_t)1 << bit;
    return 0;
}

static int
matcher_add_word(MatcherObject *self, PyObject *word, int fold, int *ngroups)
{
    if (!PyUnicode_Check(word)) {
        PyErr_SetString(PyExc_TypeError, "keywords must be str");
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(word) < 0) {
        return -1;
    }
#endif
    if (self->nwords >= MAX_WORDS) {
        PyErr_SetString(PyExc_ValueError, "at most 64 keywords");
        return -1;
    }
    if (!PyUnicode_IS_ASCII(word) || PyUnicode_GET_LENGTH(word) < 2) {
        PyErr_SetString(PyExc_ValueError, "keywords must be ASCII and at least 2 characters long");
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(word);
    const char *src = (const char *)PyUnicode_DATA(word);
    int bit = self->nwords;
    char *copy = PyMem_Malloc((size_t)n + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (fold && ascii_lower((unsigned char)src[i]) != (unsigned char)src[i]) {
            PyMem_Free(copy);
            PyErr_SetString(PyExc_ValueError, "fold keywords must be lower-case");
            return -1;
        }
        copy[i] = src[i];
    }
    copy[n] = '\0';
    self->word[bit] = copy;
    self->length[bit] = n;
    self->nwords++;
    self->all_mask |= (uint64_t)1 << bit;
    unsigned a = (unsigned char)src[0], b = (unsigned char)src[1];
    if (matcher_add_pair(self, a, b, bit, ngroups) < 0) {
        return -1;
    }
    if (fold) {
        self->fold_mask |= (uint64_t)1 << bit;
        unsigned A = (a >= 'a' && a <= 'z') ? a - ('a' - 'A') : a;
        unsigned B = (b >= 'a' && b <= 'z') ? b - ('a' - 'A') : b;
        if (matcher_add_pair(self, A, b, bit, ngroups) < 0 || matcher_add_pair(self, a, B, bit, ngroups) < 0 ||
            matcher_add_pair(self, A, B, bit, ngroups) < 0) {
            return -1;
        }
    }
    return 0;
}

static void
matcher_dealloc(MatcherObject *self)
{
    for (int i = 0; i < self->nwords; i++) {
        PyMem_Free(self->word[i]);
    }
    Py_XDECREF(self->words);
    PyTypeObject *tp = Py_TYPE(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
matcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"words", "fold_words", NULL};
    PyObject *words_arg, *fold_arg = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Matcher", kwlist, &words_arg, &fold_arg)) {
        return NULL;
    }
    MatcherObject *self = (MatcherObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* tp_alloc zeroes the object: no words, empty tables */
    PyObject *words = PySequence_Tuple(words_arg);
    if (words == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    PyObject *folds = fold_arg == NULL ? PyTuple_New(0) : PySequence_Tuple(fold_arg);
    if (folds == NULL) {
        Py_DECREF(words);
        Py_DECREF(self);
        return NULL;
    }
    int ngroups = 0;
    int failed = 0;
    for (Py_ssize_t i = 0; !failed && i < PyTuple_GET_SIZE(words); i++) {
        failed = matcher_add_word(self, PyTuple_GET_ITEM(words, i), 0, &ngroups) < 0;
    }
    for (Py_ssize_t i = 0; !failed && i < PyTuple_GET_SIZE(folds); i++) {
        failed = matcher_add_word(self, PyTuple_GET_ITEM(folds, i), 1, &ngroups) < 0;
    }
    if (!failed) {
        self->words = PySequence_Concat(words, folds);
        failed = self->words == NULL;
    }
    Py_DECREF(words);
    Py_DECREF(folds);
    if (failed) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

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

/* One pass over a text of one PyUnicode kind; returns the bits of the wanted words found. */
#define DEFINE_SEARCH(NAME, CHAR)                                                                  \
    static uint64_t NAME(const MatcherObject *self, const CHAR *text, Py_ssize_t n, uint64_t want)  \
    {                                                                                              \
        uint64_t found = 0;                                                                        \
        for (Py_ssize_t i = 0; want != 0 && i + 1 < n; i++) {                                      \
            Py_UCS4 c1 = text[i], c2 = text[i + 1];                                                \
            if ((c1 | c2) >= 128) {                                                                \
                continue;                                                                          \
            }                                                                                      \
            uint8_t g = self->pair[(c1 << 7) | c2];                                                \
            if (g == 0) {                                                                          \
                continue;                                                                          \
            }                                                                                      \
            uint64_t candidates = self->group[g] & want;                                           \
            while (candidates != 0) {                                                              \
                int bit = lowest_bit(candidates);                                                  \
                candidates &= candidates - 1;                                                      \
                Py_ssize_t len = self->length[bit];                                                \
                if (len > n - i) {                                                                 \
                    continue;                                                                      \
                }                                                                                  \
                const char *w = self->word[bit];                                                   \
                int fold = (int)((self->fold_mask >> bit) & 1);                                    \
                Py_ssize_t j = 2;                                                                  \
                for (; j < len; j++) {                                                             \
                    Py_UCS4 c = text[i + j];                                                       \
                    if (c >= 128) {                                                                \
                        break;                                                                     \
                    }                                                                              \
                    if (fold) {                                                                    \
                        c = ascii_lower(c);                                                        \
                    }                                                                              \
                    if (c != (unsigned char)w[j]) {                                                \
                        break;                                                                     \
                    }                                                                              \
                }                                                                                  \
                if (j == len) {                                                                    \
                    found |= (uint64_t)1 << bit;                                                   \
                    want &= ~((uint64_t)1 << bit);                                                 \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        return found;                                                                              \
    }

DEFINE_SEARCH(search_ucs1, Py_UCS1)
DEFINE_SEARCH(search_ucs2, Py_UCS2)
DEFINE_SEARCH(search_ucs4, Py_UCS4)

static PyObject *
matcher_search(MatcherObject *self, PyObject *args)
{
    PyObject *text;
    unsigned long long mask = ~0ULL;
    if (!PyArg_ParseTuple(args, "U|K:search", &text, &mask)) {
        return NULL;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        return NULL;
    }
#endif
    uint64_t want = (uint64_t)mask & self->all_mask;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const void *data = PyUnicode_DATA(text);
    uint64_t found;
    switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
        found = search_ucs1(self, (const Py_UCS1 *)data, n, want);
        break;
    case PyUnicode_2BYTE_KIND:
        found = search_ucs2(self, (const Py_UCS2 *)data, n, want);
        break;
    default:
        found = search_ucs4(self, (const Py_UCS4 *)data, n, want);
        break;
    }
    return PyLong_FromUnsignedLongLong((unsigned long long)found);
}

static PyObject *
matcher_get_words(MatcherObject *self, void *closure)
{
    return Py_NewRef(self->words);
}

static PyMethodDef matcher_methods[] = {
    {"search", (PyCFunction)matcher_search, METH_VARARGS,
     "search(text, mask=all) -> int: bit i set when words[i] occurs in text (fold words: ASCII case folded)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef matcher_getset[] = {
    {"words", (getter)matcher_get_words, NULL, "the words then the fold words, in bit order", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot matcher_slots[] = {
    {Py_tp_new, matcher_new},
    {Py_tp_dealloc, matcher_dealloc},
    {Py_tp_methods, matcher_methods},
    {Py_tp_getset, matcher_getset},
    {Py_tp_doc, "Matcher(words, fold_words=()): one-pass search for up to 64 ASCII keywords"},
    {0, NULL},
};

static PyType_Spec matcher_spec = {
    .name = "shared._native.Matcher",
    .basicsize = sizeof(MatcherObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = matcher_slots,
};

/* --------------------------------------------------------------------------------------------- */

static PyMethodDef native_methods[] = {
    {"check_limits", native_check_limits, METH_VARARGS,
     "check_limits(value, max_depth, max_string, max_array) -> bool: True when value is plain JSON "
     "(exact dict/list/str/int/float/bool/None, str keys) within the limits; False = look closer"},
    {"collect_keys", native_collect_keys, METH_O,
     "collect_keys(value) -> set[str] | None | False: every dict key in value; None when a value is "
     "not a plain JSON type (tuples count as plain); False when undecided (a key that is not an exact str)"},
    {NULL, NULL, 0, NULL},
};

static int
native_exec(PyObject *module)
{
    PyObject *matcher = PyType_FromModuleAndSpec(module, &matcher_spec, NULL);
    if (matcher == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "Matcher", matcher);
    Py_DECREF(matcher);
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
