/* Compiled grouping of one chunk's packets by flow key (the twin is analyzer/groups.py).
 *
 * factorize(keys, codes) numbers the distinct uint64 keys 0, 1, 2, ... in order of first
 * appearance (an open-addressing hash table, no sort) and returns the distinct keys' first
 * positions; ranks(codes, n_groups, out) gives each element's position within its group. Both
 * are single passes; the GIL is released for them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

static int get(PyObject *obj, Py_buffer *v, Py_ssize_t itemsize, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, v, flags) < 0) return -1;
    if (v->itemsize != itemsize) {
        PyErr_SetString(PyExc_TypeError, "groups: an array has the wrong item size");
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* Returns the number of groups, or -1 when the table could not be allocated. */
static Py_ssize_t factorize_loop(const uint64_t *keys, Py_ssize_t n, int64_t *codes, int64_t *first) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    int64_t *slot = malloc(cap * sizeof(int64_t)); /* group number + 1; 0 = empty */
    if (!slot) return -1;
    for (size_t i = 0; i < cap; i++) slot[i] = 0;
    Py_ssize_t k = 0;
    const size_t mask = cap - 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t key = keys[i];
        /* Flow keys are already well mixed; fold the high half in for other callers' keys. */
        size_t h = (size_t)((key ^ (key >> 29)) * 0x9E3779B97F4A7C15ULL >> 17) & mask;
        for (;;) {
            int64_t s = slot[h];
            if (s == 0) {
                slot[h] = k + 1;
                first[k] = i;
                codes[i] = k++;
                break;
            }
            if (keys[first[s - 1]] == key) {
                codes[i] = s - 1;
                break;
            }
            h = (h + 1) & mask;
        }
    }
    free(slot);
    return k;
}

static PyObject *factorize(PyObject *self, PyObject *args) {
    PyObject *ko, *co, *fo;
    if (!PyArg_ParseTuple(args, "OOO", &ko, &co, &fo)) return NULL;
    Py_buffer vk, vc, vf;
    if (get(ko, &vk, 8, 0) < 0) return NULL;
    if (get(co, &vc, 8, 1) < 0) { PyBuffer_Release(&vk); return NULL; }
    if (get(fo, &vf, 8, 1) < 0) { PyBuffer_Release(&vc); PyBuffer_Release(&vk); return NULL; }
    Py_ssize_t n = vk.len / 8, k = -2;
    if (vc.len / 8 == n && vf.len / 8 == n) {
        Py_BEGIN_ALLOW_THREADS
        k = factorize_loop((const uint64_t *)vk.buf, n, (int64_t *)vc.buf, (int64_t *)vf.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&vf); PyBuffer_Release(&vc); PyBuffer_Release(&vk);
    if (k == -2) { PyErr_SetString(PyExc_ValueError, "factorize: outputs must be as long as the keys"); return NULL; }
    if (k < 0) return PyErr_NoMemory();
    return PyLong_FromSsize_t(k);
}

static PyObject *ranks(PyObject *self, PyObject *args) {
    PyObject *co, *oo;
    Py_ssize_t groups;
    if (!PyArg_ParseTuple(args, "OnO", &co, &groups, &oo)) return NULL;
    Py_buffer vc, vo;
    if (get(co, &vc, 8, 0) < 0) return NULL;
    if (get(oo, &vo, 8, 1) < 0) { PyBuffer_Release(&vc); return NULL; }
    Py_ssize_t n = vc.len / 8;
    int bad = vo.len / 8 != n || groups < 0;
    int64_t *seen = bad ? NULL : calloc((size_t)groups + 1, sizeof(int64_t));
    if (!bad && seen) {
        const int64_t *c = vc.buf;
        int64_t *out = vo.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t g = c[i];
            if (g < 0 || g >= groups) { bad = 1; break; }
            out[i] = seen[g]++;
        }
        Py_END_ALLOW_THREADS
    }
    free(seen);
    PyBuffer_Release(&vo); PyBuffer_Release(&vc);
    if (bad) { PyErr_SetString(PyExc_ValueError, "ranks: codes must lie in [0, groups)"); return NULL; }
    if (!seen && groups >= 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"factorize", factorize, METH_VARARGS, "factorize(keys uint64, codes int64 out, first int64 out) -> groups"},
    {"ranks", ranks, METH_VARARGS, "ranks(codes int64, groups, out int64): position within each group"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_groups", "Compiled grouping by key.", -1, methods};

PyMODINIT_FUNC PyInit__groups(void) { return PyModule_Create(&module); }
