/* Compiled per-packet payload kinds: the rules of kinds.py, one packet at a time.
 *
 * kinds.py states each rule over whole columns with numpy; this file states the same rules for
 * one payload, so a chunk costs one pass instead of a hundred masked gathers. Every read goes
 * through at()/u16()/u32(), which return -1 outside [0, plen) exactly like columns.Bytes, and the
 * -1 takes part in the arithmetic the same way (tests/test_kinds_compiled.py checks equality on
 * the shared captures and on random payloads). The GIL is released for the loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The kind codes of the dissector registry (analyzer/dissect/registry.py). The names below and
 * the rule names of the two ladders are exported; kinds.py compares them with the registry at
 * import and does not use this module when they differ (a stale build). */
enum {
    K_NONE, K_OTHER, K_TCP, K_TLS_HANDSHAKE, K_TLS_APPDATA, K_STUN, K_TURN_CHANNEL, K_DTLS_HANDSHAKE,
    K_DTLS_APPDATA, K_RTP, K_RTCP, K_ZRTP, K_ZOOM_MEDIA, K_ZOOM_PROBE, K_ZOOM_CONTROL, K_QUIC_LONG,
    K_QUIC_SHORT, K_DNS, K_SIP, K_ZOOM_KEEPALIVE, K_RTP_PADDING, K_SSDP
};
static const char *const KIND_NAMES[] = {
    "none", "other", "tcp", "tls_handshake", "tls_appdata", "stun", "turn_channel", "dtls_handshake",
    "dtls_appdata", "rtp", "rtcp", "zrtp", "zoom_media", "zoom_probe", "zoom_control", "quic_long",
    "quic_short", "dns", "sip", "zoom_keepalive", "rtp_padding", "ssdp", NULL,
};
/* The rules of udp_kind() and tcp_kind(), in the order they are tried (registry rule names). */
static const char *const UDP_RULES[] = {
    "dns", "stun", "turn_channel", "dtls", "zrtp", "zoom_sfu", "zoom_p2p", "rtp", "ssdp", "sip", "quic", NULL,
};
static const char *const TCP_RULES[] = {"dns_tcp", "tls", "stun_tcp", "sip_tcp", NULL};

#define STUN_COOKIE 0x2112A442LL
#define ZRTP_COOKIE 0x5A525450LL

typedef struct {
    const uint8_t *p; /* payload start */
    int64_t n;        /* payload length */
} Pay;

static inline int64_t at(const Pay *b, int64_t rel) { return (rel >= 0 && rel < b->n) ? b->p[rel] : -1; }
static inline int64_t u16(const Pay *b, int64_t rel) {
    return (rel >= 0 && rel + 2 <= b->n) ? ((int64_t)b->p[rel] << 8) | b->p[rel + 1] : -1;
}
static inline int64_t u32(const Pay *b, int64_t rel) {
    if (rel < 0 || rel + 4 > b->n) return -1;
    const uint8_t *q = b->p + rel;
    return ((int64_t)q[0] << 24) | ((int64_t)q[1] << 16) | ((int64_t)q[2] << 8) | q[3];
}
static inline int equals(const Pay *b, int64_t rel, const char *pat, int len) {
    for (int i = 0; i < len; i++)
        if (at(b, rel + i) != (uint8_t)pat[i]) return 0;
    return 1;
}
/* numpy's >> on int64 is arithmetic: -1 >> k stays -1. */
static inline int64_t shr(int64_t v, int k) { return v < 0 ? -1 : v >> k; }
static inline int64_t nonneg(int64_t v) { return v > 0 ? v : 0; }
static inline int port_in(int64_t sp, int64_t dp, int64_t a) { return sp == a || dp == a; }

static int rtp_ok(const Pay *b, int64_t rel) {
    int64_t b0 = at(b, rel), b1 = at(b, rel + 1), plen = b->n;
    int ok = shr(b0, 6) == 2 && b1 >= 0 && !(b1 >= 192 && b1 <= 223) && rel + 12 <= plen;
    int64_t hl = 12 + 4 * (nonneg(b0) & 0x0F);
    int has_x = (nonneg(b0) & 0x10) != 0;
    int64_t ext_words = u16(b, rel + hl + 2);
    ok = ok && (!has_x || ext_words >= 0);
    if (has_x) hl = hl + 4 + 4 * nonneg(ext_words);
    return ok && rel + hl <= plen;
}

/* rtp.padding_only: P set and the padding count covers all bytes after the header. */
static int rtp_padding_only(const Pay *b) {
    int64_t b0 = at(b, 0), plen = b->n;
    int64_t hl = 12 + 4 * (nonneg(b0) & 0x0F);
    if ((nonneg(b0) & 0x10) != 0) hl = hl + 4 + 4 * nonneg(u16(b, hl + 2));
    int64_t pad = at(b, plen - 1);
    return b0 >= 0 && (nonneg(b0) & 0x20) != 0 && pad > 0 && hl + pad == plen;
}

static int rtcp_ok(const Pay *b, int64_t rel) {
    int64_t b0 = at(b, rel), b1 = at(b, rel + 1), words = u16(b, rel + 2);
    return shr(b0, 6) == 2 && b1 >= 192 && b1 <= 223 && words >= 0 && rel + 4 * (words + 1) <= b->n;
}

static int zoom_known(int64_t t) {
    switch (t) {
    case 0x0F: case 0x10: case 0x0D: case 0x1E: case 0x21: case 0x22: case 0x23: case 0x15: case 0x0A:
    case 0x1F: case 0x01: case 0x0C: case 0x20:
        return 1;
    default:
        return 0;
    }
}

static int zoom_media_ok(const Pay *b, int64_t inner) {
    int64_t t = at(b, inner), rtp_rel = -1;
    if (t == 0x0F) rtp_rel = inner + 19;
    else if (t == 0x10 && at(b, inner + 20) >= 0) rtp_rel = at(b, inner + 20) == 0x02 ? inner + 24 : inner + 20;
    else if (t == 0x0D && at(b, inner + 7) == 0x1E) rtp_rel = inner + 27;
    else if (t == 0x1E) rtp_rel = inner + 20;
    if (rtp_rel >= 0 && rtp_ok(b, rtp_rel)) return 1;
    return t >= 0x21 && t <= 0x23 && rtcp_ok(b, inner + 16);
}

/* Zoom SFU payload (ports 8801-8810, first byte 1-5): returns a kind or -1. */
static int zoom_sfu(const Pay *b) {
    int64_t b0 = at(b, 0), plen = b->n;
    int setup = (b0 == 1 && plen >= 39) || (b0 == 2 && plen >= 27) || (b0 == 3 && plen >= 13) ||
                (b0 == 4 && plen >= 13);
    int data = b0 == 5 && plen >= 2;
    int64_t d7 = at(b, 7);
    int gen_b = plen > 8 && (d7 == 0x00 || d7 == 0x04);
    int media = data && ((gen_b && zoom_media_ok(b, 8)) || zoom_media_ok(b, 1));
    if (media) return K_ZOOM_MEDIA;
    int64_t t_b = at(b, 8), t_a = at(b, 1);
    int64_t t_rest = (gen_b && zoom_known(t_b)) ? t_b : (zoom_known(t_a) ? t_a : -1);
    if (data && t_rest == 0x15) return K_ZOOM_PROBE;
    if (data && t_rest == 0x0A) return K_ZOOM_KEEPALIVE;
    if (setup || data) return K_ZOOM_CONTROL;
    return -1;
}

/* Zoom's media header at UDP+0 (P2P): returns a kind or -1. */
static int zoom_p2p(const Pay *b) {
    int64_t plen = b->n;
    if (equals(b, 1, "\x01\x00\xfb", 3) && zoom_media_ok(b, 0)) return K_ZOOM_MEDIA;
    if (equals(b, 0, "\x15\x01\x00\x00\x00\x00", 6) && plen >= 16) return K_ZOOM_PROBE;
    int64_t n1 = u32(b, 24);
    int n1_ok = n1 >= 0 && n1 <= 64;
    int64_t n2 = u32(b, n1_ok ? 28 + n1 : -1);
    int n2_ok = n2 >= 0 && n2 <= 64;
    int64_t end = 24 + 4 + n1 + 4 + n2 + 4;
    int zeros = at(b, plen - 4) == 0 && at(b, plen - 3) == 0 && at(b, plen - 2) == 0 && at(b, plen - 1) == 0;
    if (equals(b, 0, "\x1f\x02\x01\x00", 4) && n1_ok && n2_ok && end == plen && zeros) return K_ZOOM_CONTROL;
    return -1;
}

static int stun_udp(const Pay *b) {
    int64_t plen = b->n;
    int ms = equals(b, 0, "\xff\x10", 2) && plen >= 32;
    int64_t base = ms ? 12 : 0;
    int64_t t0 = at(b, base), length = u16(b, base + 2);
    int head = t0 >= 0 && (t0 & 0xC0) == 0 && length >= 0 && base + 20 + length == plen;
    int cookie = u32(b, base + 4) == STUN_COOKIE;
    int classic = t0 <= 3 && length % 4 == 0;
    return head && (cookie || classic);
}

static int stun_tcp(const Pay *b) {
    int64_t plen = b->n, a0 = at(b, 0), a2 = at(b, 2), l2 = u16(b, 2), l4 = u16(b, 4), frame = u16(b, 0);
    int direct = a0 >= 0 && (a0 & 0xC0) == 0 && u32(b, 4) == STUN_COOKIE && 20 + l2 <= plen && l2 >= 0;
    int framed = a2 >= 0 && (a2 & 0xC0) == 0 && u32(b, 6) == STUN_COOKIE && l4 >= 0 && frame == 20 + l4 &&
                 2 + frame <= plen;
    return a0 >= 0 && (direct || framed);
}

static const char *const SIP_PREFIXES[] = {
    "INVITE ", "REGISTER ", "ACK ", "BYE ", "CANCEL ", "OPTIONS ", "NOTIFY ", "SUBSCRIBE ",
    "PUBLISH ", "MESSAGE ", "INFO ", "PRACK ", "REFER ", "UPDATE ", "SIP/2.0 ", NULL,
};

static int sip(const Pay *b, int64_t sp, int64_t dp) {
    if (port_in(sp, dp, 5060) || port_in(sp, dp, 5061)) return 1;
    for (int i = 0; SIP_PREFIXES[i]; i++) {
        const char *pre = SIP_PREFIXES[i];
        int len = (int)strlen(pre);
        if (equals(b, 0, pre, len)) return 1;
    }
    return 0;
}

/* SSDP (ssdp.py): UDP 1900 and one of its three start lines. */
static const char *const SSDP_PREFIXES[] = {"M-SEARCH * ", "NOTIFY * ", "HTTP/1.1 ", NULL};

static int ssdp(const Pay *b, int64_t sp, int64_t dp) {
    if (!port_in(sp, dp, 1900)) return 0;
    for (int i = 0; SSDP_PREFIXES[i]; i++)
        if (equals(b, 0, SSDP_PREFIXES[i], (int)strlen(SSDP_PREFIXES[i]))) return 1;
    return 0;
}

static int udp_kind(const Pay *b, int64_t sp, int64_t dp) {
    int64_t plen = b->n, b0 = at(b, 0);
    if (port_in(sp, dp, 53) || port_in(sp, dp, 5353) || port_in(sp, dp, 5355)) return K_DNS;
    if ((b0 <= 0x3F || b0 == 0xFF) && stun_udp(b)) return K_STUN;
    if (b0 >= 0x40 && b0 <= 0x4F && plen >= 4) {
        int64_t spare = plen - 4 - u16(b, 2);
        if (spare >= 0 && spare <= 3) return K_TURN_CHANNEL;
    }
    int64_t rec_len = u16(b, 11), ver = u16(b, 1);
    int dtls = plen >= 13 && (ver == 0xFEFF || ver == 0xFEFD || ver == 0xFEFC || ver == 0x0100) && rec_len >= 0 &&
               13 + rec_len <= plen;
    if (dtls && (b0 == 20 || b0 == 21 || b0 == 22 || b0 == 24 || b0 == 26)) return K_DTLS_HANDSHAKE;
    if (dtls && (b0 == 23 || b0 == 25)) return K_DTLS_APPDATA;
    int64_t uni_hl = (nonneg(b0) & 0x08) != 0 ? 5 : 4;
    if (b0 >= 0 && (b0 & 0xE0) == 0x20 && (b0 & 0x10) == 0 && (b0 & 0x04) != 0 && uni_hl + u16(b, uni_hl - 2) == plen)
        return K_DTLS_APPDATA;
    if (b0 == 0x10 && u32(b, 4) == ZRTP_COOKIE) return K_ZRTP;
    int zoom_port = (sp >= 8801 && sp <= 8810) || (dp >= 8801 && dp <= 8810);
    if (zoom_port && b0 >= 0x01 && b0 <= 0x05) {
        int k = zoom_sfu(b);
        if (k >= 0) return k;
    }
    switch (b0) {
    case 0x0F: case 0x10: case 0x0D: case 0x1E: case 0x21: case 0x22: case 0x23: case 0x15: case 0x1F: {
        int k = zoom_p2p(b);
        if (k >= 0) return k;
        break;
    }
    default:
        break;
    }
    if (b0 >= 128 && b0 <= 191) {
        if (rtcp_ok(b, 0)) return K_RTCP;
        if (rtp_ok(b, 0)) return rtp_padding_only(b) ? K_RTP_PADDING : K_RTP;
    }
    if (ssdp(b, sp, dp)) return K_SSDP;
    if (sip(b, sp, dp)) return K_SIP;
    int64_t version = u32(b, 1), d5 = at(b, 5);
    int known = version == 0x00000001 || version == 0x6B3343CF || shr(version, 8) == 0xFF0000;
    int quic_port = port_in(sp, dp, 443);
    if (b0 >= 0xC0 && plen >= 7 && d5 >= 0 && d5 <= 20 && (quic_port || known)) return K_QUIC_LONG;
    if (b0 >= 0x40 && b0 <= 0x7F && plen >= 21 && quic_port) return K_QUIC_SHORT;
    return K_OTHER;
}

static int tcp_kind(const Pay *b, int64_t sp, int64_t dp) {
    int64_t b0 = at(b, 0), b1 = at(b, 1), b2 = at(b, 2);
    if (port_in(sp, dp, 53)) return K_DNS;
    int tls = b0 >= 20 && b0 <= 23 && b1 == 3 && b2 >= 0 && b2 <= 4;
    if (tls) return b0 == 23 ? K_TLS_APPDATA : K_TLS_HANDSHAKE;
    if (b0 >= 0 && b0 <= 0x3F && stun_tcp(b)) return K_STUN;
    if (sip(b, sp, dp)) return K_SIP;
    return K_TCP;
}

static void kinds_loop(const uint8_t *buf, int64_t buflen, const int64_t *off, const int32_t *len,
                       const uint8_t *proto, const int32_t *sport, const int32_t *dport, Py_ssize_t n, uint8_t *out) {
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t o = off[i], l = len[i] > 0 ? len[i] : 0;
        /* A bad offset or length reads as no payload at all. */
        if (!(o >= 0 && o + l <= buflen)) l = 0;
        if (l == 0) {
            out[i] = K_NONE;
            continue;
        }
        Pay b = {buf + o, l};
        if (proto[i] == 17) out[i] = (uint8_t)udp_kind(&b, sport[i], dport[i]);
        else if (proto[i] == 6) out[i] = (uint8_t)tcp_kind(&b, sport[i], dport[i]);
        else out[i] = K_OTHER;
    }
}

/* Where the RTP header of a media packet starts and what it says (rtpcolumns.rtp_header_fields). */
enum { M_AUDIO = 1, M_VIDEO = 2, M_SCREEN = 3 };

static void rtp_fields_one(const Pay *b, int kind, int64_t sp, int64_t dp, int64_t *o) {
    int64_t rel = -1, zmedia = -1;
    int zoom = kind == K_ZOOM_MEDIA;
    if (kind == K_RTP) rel = 0;
    else if (zoom) {
        /* The generation as kinds.py chooses it: SFU Gen B (inner +8), Gen A (+1), else P2P (+0). */
        int port = (sp >= 8801 && sp <= 8810) || (dp >= 8801 && dp <= 8810);
        int sfu = at(b, 0) == 0x05 && port;
        int64_t d7 = at(b, 7);
        int gen_b = sfu && b->n > 8 && (d7 == 0x00 || d7 == 0x04) && zoom_media_ok(b, 8);
        int gen_a = sfu && !gen_b && zoom_media_ok(b, 1);
        int64_t inner = gen_b ? 8 : (gen_a ? 1 : 0);
        int64_t t = at(b, inner), b20 = at(b, inner + 20);
        int is_a = t == 0x0F, is_v = t == 0x10 && b20 >= 0;
        int is_s = (t == 0x0D && at(b, inner + 7) == 0x1E) || t == 0x1E;
        if (is_a) rel = inner + 19;
        if (is_v) rel = b20 == 0x02 ? inner + 24 : inner + 20;
        if (t == 0x0D && is_s) rel = inner + 27;
        if (t == 0x1E) rel = inner + 20;
        zmedia = is_a ? M_AUDIO : (is_v ? M_VIDEO : (is_s ? M_SCREEN : -1));
    }
    int64_t relc = rel > 0 ? rel : 0;
    int64_t b0 = at(b, relc), b1 = at(b, relc + 1);
    int64_t hl = 12 + 4 * (nonneg(b0) & 0x0F);
    int has_x = (nonneg(b0) & 0x10) != 0;
    int64_t ext_words = u16(b, relc + hl + 2);
    if (has_x) hl = hl + 4 + 4 * nonneg(ext_words);
    int64_t seq = u16(b, relc + 2), rts = u32(b, relc + 4), ssrc = u32(b, relc + 8);
    int64_t pt = nonneg(b1) & 0x7F;
    int ok = rel >= 0 && shr(b0, 6) == 2 && seq >= 0 && ssrc >= 0 && (!has_x || ext_words >= 0) && relc + hl <= b->n;
    ok = ok && (zoom || pt <= 34 || pt >= 96) && (!zoom || zmedia >= 0); /* RFC 3551 PT ranges */
    o[0] = rel; o[1] = hl; o[2] = seq; o[3] = rts; o[4] = ssrc; o[5] = pt; o[6] = zmedia; o[7] = ok;
}

static int get(PyObject *obj, Py_buffer *v, Py_ssize_t itemsize, Py_ssize_t n, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, v, flags) < 0) return -1;
    if (v->itemsize != itemsize || (n >= 0 && v->len / itemsize != n)) {
        PyErr_SetString(PyExc_TypeError, "payload_kinds: an array has the wrong item size or length");
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* Both functions take (buf, off int64, length, kinds-or-proto uint8, sport int32, dport int32,
 * out): borrow the seven buffers, checking item sizes and that every column has the packets'
 * length (`out_per_packet` items per packet for the output). Returns the number of buffers held;
 * fewer than 7 means a Python error is set. */
static int borrow7(PyObject *args, Py_buffer *v, Py_ssize_t length_size, Py_ssize_t out_size,
                   Py_ssize_t out_per_packet, Py_ssize_t *n) {
    PyObject *ob[7];
    if (!PyArg_ParseTuple(args, "OOOOOOO", &ob[0], &ob[1], &ob[2], &ob[3], &ob[4], &ob[5], &ob[6])) return 0;
    if (PyObject_GetBuffer(ob[0], &v[0], PyBUF_C_CONTIGUOUS) < 0) return 0;
    if (get(ob[1], &v[1], 8, -1, 0) < 0) return 1;
    *n = v[1].len / 8;
    const Py_ssize_t sizes[7] = {1, 8, length_size, 1, 4, 4, out_size};
    for (int got = 2; got < 7; got++)
        if (get(ob[got], &v[got], sizes[got], got == 6 ? *n * out_per_packet : *n, got == 6) < 0) return got;
    return 7;
}

static PyObject *payload_kinds(PyObject *self, PyObject *args) {
    Py_buffer v[7];
    Py_ssize_t n = 0;
    int got = borrow7(args, v, 4, 1, 1, &n);
    PyObject *result = NULL;
    if (got == 7) {
        Py_BEGIN_ALLOW_THREADS
        kinds_loop((const uint8_t *)v[0].buf, v[0].len, (const int64_t *)v[1].buf, (const int32_t *)v[2].buf,
                   (const uint8_t *)v[3].buf, (const int32_t *)v[4].buf, (const int32_t *)v[5].buf, n,
                   (uint8_t *)v[6].buf);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return result;
}

/* rtp_fields(buf, off int64, plen int64, kinds uint8, sport int32, dport int32, out int64[n, 8]):
 * per packet rel, header length, seq, RTP timestamp, SSRC, PT, Zoom media code, ok. `plen` must
 * already be clamped to the buffer. */
static PyObject *rtp_fields(PyObject *self, PyObject *args) {
    Py_buffer v[7];
    Py_ssize_t n = 0;
    int got = borrow7(args, v, 8, 8, 8, &n);
    PyObject *result = NULL;
    if (got == 7) {
        const uint8_t *buf = v[0].buf;
        const int64_t *off = v[1].buf, *plen = v[2].buf;
        const uint8_t *kinds = v[3].buf;
        const int32_t *sport = v[4].buf, *dport = v[5].buf;
        int64_t *out = v[6].buf;
        int64_t buflen = v[0].len;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t o = off[i], l = plen[i] > 0 ? plen[i] : 0;
            if (!(o >= 0 && o + l <= buflen)) { o = 0; l = 0; }
            Pay b = {buf + o, l};
            rtp_fields_one(&b, kinds[i], sport[i], dport[i], out + 8 * i);
        }
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"rtp_fields", rtp_fields, METH_VARARGS, "rtp_fields(buf, off, plen, kinds, sport, dport, out[n, 8])"},
    {"payload_kinds", payload_kinds, METH_VARARGS,
     "payload_kinds(buf, off int64, length int32, proto uint8, sport int32, dport int32, out uint8)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kinds", "Compiled payload kinds.", -1, methods};

static PyObject *names_tuple(const char *const *names) {
    Py_ssize_t n = 0;
    while (names[n]) n++;
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(names[i]);
        if (s == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, s);
    }
    return t;
}

/* PyModule_AddObject steals the reference only on success (PyModule_Add is 3.13+). */
static int add_names(PyObject *m, const char *name, const char *const *names) {
    PyObject *t = names_tuple(names);
    if (t == NULL) return -1;
    if (PyModule_AddObject(m, name, t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__kinds(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (add_names(m, "KIND_NAMES", KIND_NAMES) < 0 || add_names(m, "UDP_RULES", UDP_RULES) < 0 ||
        add_names(m, "TCP_RULES", TCP_RULES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
