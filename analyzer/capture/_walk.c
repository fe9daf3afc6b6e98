/* Compiled record walks for pcap and pcapng (the one sequential step of reading a capture).
 *
 * Same contract as the pure-Python walkers in walk.py: fill the output arrays with one entry per
 * record found from `pos`, stop at the end of the buffer, when the outputs are full, or at a
 * block Python must handle, and return (records, next position, status). Built as an optional
 * extension: when it is missing, walk.py falls back to Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define WALK_OK 0
#define WALK_CORRUPT 1
#define WALK_SECTION 2
#define WALK_INTERFACE 3
#define SPB_IFACE 0xFFFFFFFFu
#define BAD_RECORD (-1)
#define PCAPNG_MAX_BLOCK (64u * 1024u * 1024u)

static inline uint32_t rd32(const uint8_t *p, int big) {
    if (big) return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static inline uint32_t rd16(const uint8_t *p, int big) {
    if (big) return ((uint32_t)p[0] << 8) | p[1];
    return ((uint32_t)p[1] << 8) | p[0];
}

/* Borrow writable buffers of the expected item size; returns 0 on success. */
static int get_out(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_SetString(PyExc_TypeError, "output array has the wrong item size");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *walk_pcap(PyObject *self, PyObject *args) {
    PyObject *bufo, *o_off, *o_cap, *o_wire, *o_sec, *o_frac;
    Py_ssize_t pos, end;
    int big;
    long long max_caplen;
    if (!PyArg_ParseTuple(args, "OnnpLOOOOO", &bufo, &pos, &end, &big, &max_caplen, &o_off, &o_cap, &o_wire,
                          &o_sec, &o_frac))
        return NULL;
    Py_buffer b, voff, vcap, vwire, vsec, vfrac;
    if (PyObject_GetBuffer(bufo, &b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (get_out(o_off, &voff, 8) < 0) goto fail0;
    if (get_out(o_cap, &vcap, 8) < 0) goto fail1;
    if (get_out(o_wire, &vwire, 8) < 0) goto fail2;
    if (get_out(o_sec, &vsec, 4) < 0) goto fail3;
    if (get_out(o_frac, &vfrac, 4) < 0) goto fail4;
    {
        const uint8_t *buf = (const uint8_t *)b.buf;
        int64_t *off = (int64_t *)voff.buf, *cap = (int64_t *)vcap.buf, *wire = (int64_t *)vwire.buf;
        uint32_t *sec = (uint32_t *)vsec.buf, *frac = (uint32_t *)vfrac.buf;
        Py_ssize_t limit = voff.len / 8, n = 0;
        int status = WALK_OK;
        if (end > b.len) end = b.len;
        while (n < limit && pos + 16 <= end) {
            uint32_t caplen = rd32(buf + pos + 8, big);
            if ((long long)caplen > max_caplen) { status = WALK_CORRUPT; break; }
            if (pos + 16 + (Py_ssize_t)caplen > end) break;
            sec[n] = rd32(buf + pos, big);
            frac[n] = rd32(buf + pos + 4, big);
            cap[n] = caplen;
            wire[n] = rd32(buf + pos + 12, big);
            off[n] = pos + 16;
            pos += 16 + (Py_ssize_t)caplen;
            n++;
        }
        PyBuffer_Release(&vfrac); PyBuffer_Release(&vsec); PyBuffer_Release(&vwire);
        PyBuffer_Release(&vcap); PyBuffer_Release(&voff); PyBuffer_Release(&b);
        return Py_BuildValue("nni", n, pos, status);
    }
fail4: PyBuffer_Release(&vsec);
fail3: PyBuffer_Release(&vwire);
fail2: PyBuffer_Release(&vcap);
fail1: PyBuffer_Release(&voff);
fail0: PyBuffer_Release(&b);
    return NULL;
}

static PyObject *walk_pcapng(PyObject *self, PyObject *args) {
    PyObject *bufo, *o_off, *o_cap, *o_wire, *o_hi, *o_lo, *o_if;
    Py_ssize_t pos, end;
    int big;
    if (!PyArg_ParseTuple(args, "OnnpOOOOOO", &bufo, &pos, &end, &big, &o_off, &o_cap, &o_wire, &o_hi, &o_lo, &o_if))
        return NULL;
    Py_buffer b, voff, vcap, vwire, vhi, vlo, vif;
    if (PyObject_GetBuffer(bufo, &b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (get_out(o_off, &voff, 8) < 0) goto f0;
    if (get_out(o_cap, &vcap, 8) < 0) goto f1;
    if (get_out(o_wire, &vwire, 8) < 0) goto f2;
    if (get_out(o_hi, &vhi, 4) < 0) goto f3;
    if (get_out(o_lo, &vlo, 4) < 0) goto f4;
    if (get_out(o_if, &vif, 4) < 0) goto f5;
    {
        const uint8_t *buf = (const uint8_t *)b.buf;
        int64_t *off = (int64_t *)voff.buf, *cap = (int64_t *)vcap.buf, *wire = (int64_t *)vwire.buf;
        uint32_t *hi = (uint32_t *)vhi.buf, *lo = (uint32_t *)vlo.buf, *ifc = (uint32_t *)vif.buf;
        Py_ssize_t limit = voff.len / 8, n = 0;
        int status = WALK_OK;
        if (end > b.len) end = b.len;
        while (n < limit && pos + 12 <= end) {
            uint32_t btype = rd32(buf + pos, big);
            if (btype == 0x0A0D0D0Au) { status = WALK_SECTION; break; }
            uint32_t blen = rd32(buf + pos + 4, big);
            if (blen < 12 || blen % 4 != 0 || blen > PCAPNG_MAX_BLOCK) { status = WALK_CORRUPT; break; }
            if (pos + (Py_ssize_t)blen > end) break;
            if (rd32(buf + pos + blen - 4, big) != blen) { status = WALK_CORRUPT; break; }
            if (btype == 1) { status = WALK_INTERFACE; break; }
            if (btype == 6 || btype == 2) {
                if (blen < 32) { status = WALK_CORRUPT; break; }
                uint32_t caplen = rd32(buf + pos + 20, big);
                ifc[n] = btype == 6 ? rd32(buf + pos + 8, big) : rd16(buf + pos + 8, big);
                hi[n] = rd32(buf + pos + 12, big);
                lo[n] = rd32(buf + pos + 16, big);
                wire[n] = rd32(buf + pos + 24, big);
                off[n] = pos + 28;
                cap[n] = caplen > blen - 32 ? BAD_RECORD : (int64_t)caplen;
                n++;
            } else if (btype == 3) {
                if (blen < 16) { status = WALK_CORRUPT; break; }
                uint32_t w = rd32(buf + pos + 8, big), room = blen - 16;
                ifc[n] = SPB_IFACE;
                hi[n] = 0;
                lo[n] = 0;
                wire[n] = w;
                off[n] = pos + 12;
                cap[n] = w < room ? w : room;
                n++;
            }
            pos += blen;
        }
        PyBuffer_Release(&vif); PyBuffer_Release(&vlo); PyBuffer_Release(&vhi); PyBuffer_Release(&vwire);
        PyBuffer_Release(&vcap); PyBuffer_Release(&voff); PyBuffer_Release(&b);
        return Py_BuildValue("nni", n, pos, status);
    }
f5: PyBuffer_Release(&vlo);
f4: PyBuffer_Release(&vhi);
f3: PyBuffer_Release(&vwire);
f2: PyBuffer_Release(&vcap);
f1: PyBuffer_Release(&voff);
f0: PyBuffer_Release(&b);
    return NULL;
}

static PyMethodDef methods[] = {
    {"walk_pcap", walk_pcap, METH_VARARGS, "Walk classic pcap records."},
    {"walk_pcapng", walk_pcapng, METH_VARARGS, "Walk pcapng packet blocks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", NULL, -1, methods};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }
