/* Compiled frame decoding: link layer -> innermost IP 5-tuple, one frame at a time.
 *
 * The same rules as the numpy decoder in this package (link.py, network.py, transport.py,
 * tunnels.py and decode_frames in __init__.py), written as a loop so that a chunk costs one pass
 * over its frames instead of dozens of numpy gathers. tests/test_decode_compiled.py checks that
 * both give identical columns on the shared captures, on synthetic ones and on random bytes.
 *
 * Reads past a frame's captured end yield 0 (the numpy decoder masks every such read the same
 * way), so no frame can see its neighbour's bytes. The GIL is released for the loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Reasons (reasons.py). */
#define ST_OK 0
#define ST_NON_IP 1
#define ST_UNKNOWN_LINKTYPE 2
#define ST_TRUNCATED_LINK 3
#define ST_BAD_IP_HEADER 4
#define ST_TRUNCATED_TRANSPORT 5
#define ST_EMPTY_FRAME 7

#define ENC_VLAN 1
#define ENC_MPLS 2
#define ENC_PPPOE 4
#define ENC_GRE 8
#define ENC_IPIP 16
#define ENC_GTP 32
#define ENC_VXLAN 64
#define ENC_PPP 128

#define ET_IPV4 0x0800
#define ET_IPV6 0x86DD
#define ET_NONE (-1)
#define ET_INNER_ETHERNET (-2)

#define MAX_TUNNEL_DEPTH 4
#define MAX_VLAN_TAGS 4
#define MAX_MPLS_LABELS 8
#define MAX_IPV6_EXT 8
#define MAX_GTP_EXTENSIONS 4

typedef struct {
    const uint8_t *buf;
    int64_t end; /* frame end (exclusive), never past the buffer */
} Frame;

static inline int64_t b8(const Frame *f, int64_t pos) {
    return (pos >= 0 && pos < f->end) ? f->buf[pos] : 0;
}
static inline int64_t b16(const Frame *f, int64_t pos) { return (b8(f, pos) << 8) | b8(f, pos + 1); }
static inline int64_t b32(const Frame *f, int64_t pos) { return (b16(f, pos) << 16) | b16(f, pos + 2); }
static inline uint64_t b64(const Frame *f, int64_t pos) {
    return ((uint64_t)b32(f, pos) << 32) | (uint64_t)b32(f, pos + 4);
}

static inline int64_t version_to_ethertype(const Frame *f, int64_t pos) {
    int64_t nib = pos < f->end ? b8(f, pos) >> 4 : 0;
    return nib == 4 ? ET_IPV4 : (nib == 6 ? ET_IPV6 : ET_NONE);
}

static inline int64_t ppp_to_ethertype(int64_t proto) {
    return proto == 0x0021 ? ET_IPV4 : (proto == 0x0057 ? ET_IPV6 : ET_NONE);
}

static inline int is_vlan(int64_t et) { return et == 0x8100 || et == 0x88A8 || et == 0x9100 || et == 0x9200; }

/* VLAN tags, MPLS labels, PPPoE sessions after an EtherType (link.py ethertype_chain). */
static void ethertype_chain(const Frame *f, int64_t *et, int64_t *pos, int64_t *encap) {
    for (int i = 0; i < MAX_VLAN_TAGS; i++) {
        if (!(is_vlan(*et) && *pos + 4 <= f->end)) break;
        *et = b16(f, *pos + 2);
        *pos += 4;
        *encap |= ENC_VLAN;
    }
    if (*et == 0x8847 || *et == 0x8848) {
        int64_t p = *pos;
        int done = 0;
        for (int i = 0; i < MAX_MPLS_LABELS; i++) {
            if (done || p + 4 > f->end) break;
            int bos = (int)(b8(f, p + 2) & 1);
            p += 4;
            done = bos;
        }
        *pos = p;
        *et = done ? version_to_ethertype(f, p) : ET_NONE;
        *encap |= ENC_MPLS;
    }
    if (*et == 0x8864 && *pos + 8 <= f->end) {
        *et = ppp_to_ethertype(b16(f, *pos + 6));
        *pos += 8;
        *encap |= ENC_PPPOE;
    }
}

/* Returns the status; sets the EtherType, network-layer position and encapsulation bits. */
static int link_layer(const Frame *f, int64_t s, int64_t lt, int64_t *et, int64_t *pos, int64_t *encap) {
    int64_t e = f->end;
    int short_ = 0;
    *encap = 0;
    switch (lt) {
    case 1: /* Ethernet */
        short_ = s + 14 > e;
        *et = b16(f, s + 12);
        *pos = s + 14;
        ethertype_chain(f, et, pos, encap);
        break;
    case 113: /* Linux SLL */
        short_ = s + 16 > e;
        *et = b16(f, s + 14);
        *pos = s + 16;
        ethertype_chain(f, et, pos, encap);
        break;
    case 276: /* Linux SLL2 */
        short_ = s + 20 > e;
        *et = b16(f, s);
        *pos = s + 20;
        ethertype_chain(f, et, pos, encap);
        break;
    case 101: case 12: case 14: case 228: case 229: /* raw IP */
        short_ = s + 1 > e;
        *pos = s;
        *et = version_to_ethertype(f, s);
        break;
    case 0: case 108: /* NULL / LOOP: the IP version nibble after the 4-byte family */
        short_ = s + 5 > e;
        *pos = s + 4;
        *et = version_to_ethertype(f, s + 4);
        break;
    case 9: case 50: { /* PPP, PPP in HDLC framing */
        int64_t proto_at = b16(f, s) == 0xFF03 ? s + 2 : s;
        short_ = proto_at + 2 > e;
        *pos = proto_at + 2;
        *encap = ENC_PPP;
        *et = ppp_to_ethertype(b16(f, proto_at));
        break;
    }
    case 51: /* PPPoE without Ethernet */
        short_ = s + 8 > e;
        *pos = s + 8;
        *encap = ENC_PPPOE;
        *et = ppp_to_ethertype(b16(f, s + 6));
        break;
    case 104: /* Cisco HDLC */
        short_ = s + 4 > e;
        *et = b16(f, s + 2);
        *pos = s + 4;
        ethertype_chain(f, et, pos, encap);
        break;
    default:
        *et = ET_NONE;
        *pos = s;
        return ST_UNKNOWN_LINKTYPE;
    }
    if (short_) {
        *et = ET_NONE;
        return ST_TRUNCATED_LINK;
    }
    if (*et != ET_IPV4 && *et != ET_IPV6) return ST_NON_IP;
    return e <= s ? ST_EMPTY_FRAME : ST_OK;
}

typedef struct {
    int ok;
    uint8_t ver;
    int64_t proto;
    uint64_t src_hi, src_lo, dst_hi, dst_lo;
    int64_t l4pos, ipend, frag_off, frag_id;
    int more;
} Ip;

static void decode_ip(const Frame *f, int64_t et, int64_t p, Ip *ip) {
    int64_t e = f->end;
    ip->ok = 0;
    ip->src_hi = ip->src_lo = ip->dst_hi = ip->dst_lo = 0;
    ip->frag_off = ip->frag_id = 0;
    ip->more = 0;
    ip->proto = 0;
    ip->l4pos = p;
    ip->ipend = e;
    if (et == ET_IPV4) {
        int64_t vihl = b8(f, p), ihl = (vihl & 0x0F) * 4, total = b16(f, p + 2), fragw = b16(f, p + 6);
        ip->ok = (vihl >> 4) == 4 && ihl >= 20 && p + ihl <= e;
        /* total length 0 appears with TCP segmentation offload: trust the captured frame then. */
        ip->ipend = (total >= ihl && total != 0) ? (p + total < e ? p + total : e) : e;
        ip->ver = 4;
        ip->proto = b8(f, p + 9);
        ip->src_lo = 0xFFFF00000000ULL | (uint64_t)b32(f, p + 12);
        ip->dst_lo = 0xFFFF00000000ULL | (uint64_t)b32(f, p + 16);
        ip->l4pos = p + ihl;
        ip->frag_off = (fragw & 0x1FFF) * 8;
        ip->more = (fragw & 0x2000) != 0;
        ip->frag_id = b16(f, p + 4);
    } else if (et == ET_IPV6) {
        int ok = (b8(f, p) >> 4) == 6 && p + 40 <= e;
        int64_t plen = b16(f, p + 4);
        int64_t ipend = plen > 0 ? (p + 40 + plen < e ? p + 40 + plen : e) : e; /* 0 = jumbogram */
        int64_t nh = b8(f, p + 6), l4 = p + 40;
        for (int i = 0; i < MAX_IPV6_EXT; i++) {
            if (l4 + 8 > ipend) break;
            int64_t hdr_len;
            if (nh == 0 || nh == 43 || nh == 60 || nh == 135 || nh == 139 || nh == 140) {
                hdr_len = (b8(f, l4 + 1) + 1) * 8;
            } else if (nh == 44) {
                int64_t fo = b16(f, l4 + 2);
                ip->frag_off = (fo >> 3) * 8;
                ip->more = (fo & 1) != 0;
                ip->frag_id = b32(f, l4 + 4);
                hdr_len = 8;
            } else if (nh == 51) {
                hdr_len = (b8(f, l4 + 1) + 2) * 4;
            } else {
                break;
            }
            nh = b8(f, l4);
            l4 += hdr_len;
        }
        ip->ok = ok && l4 <= ipend;
        ip->ver = 6;
        ip->proto = nh;
        ip->src_hi = b64(f, p + 8);
        ip->src_lo = b64(f, p + 16);
        ip->dst_hi = b64(f, p + 24);
        ip->dst_lo = b64(f, p + 32);
        ip->l4pos = l4;
        ip->ipend = ipend;
    }
}

typedef struct {
    int ok;
    int64_t sport, dport, flags, seq, pay_off, pay_len;
} Transport;

static void decode_transport(const Frame *f, const Ip *ip, Transport *t) {
    int64_t p = ip->l4pos, e = ip->ipend, proto = ip->proto;
    int first = ip->frag_off == 0;
    t->ok = 1;
    t->sport = t->dport = t->flags = 0;
    t->seq = -1;
    t->pay_off = p;
    t->pay_len = e - p > 0 ? e - p : 0;
    if (!first) return;
    if (proto == 6 || proto == 17 || proto == 132 || proto == 136) {
        t->ok = p + 4 <= e;
        t->sport = b16(f, p);
        t->dport = b16(f, p + 2);
    }
    if (proto == 6) {
        int64_t doff = (b8(f, p + 12) >> 4) * 4;
        int full = p + 14 <= e && doff >= 20;
        t->ok = t->ok && full;
        t->flags = full ? b8(f, p + 13) : 0;
        t->seq = p + 8 <= e ? b32(f, p + 4) : -1;
        int64_t start = p + doff < e ? p + doff : e;
        t->pay_off = start;
        t->pay_len = full ? e - start : 0;
    } else if (proto == 17 || proto == 136) {
        int64_t ulen = b16(f, p + 4);
        /* The UDP length may exceed what was captured (snaplen) or be 0 (jumbograms). */
        int64_t uend = ulen >= 8 ? (p + ulen < e ? p + ulen : e) : e;
        t->pay_off = p + 8;
        t->pay_len = uend - (p + 8) > 0 ? uend - (p + 8) : 0;
    } else if (proto == 132) {
        t->pay_off = p + 12;
        t->pay_len = e - p - 12 > 0 ? e - p - 12 : 0;
    } else if (proto == 1 || proto == 58) {
        /* ICMP type and code are kept in `flags` (high byte type, low byte code) for Community ID. */
        t->flags = ((p < e ? b8(f, p) : 0) << 8) | (p + 1 < e ? b8(f, p + 1) : 0);
        t->pay_off = p + 8;
        t->pay_len = e - p - 8 > 0 ? e - p - 8 : 0;
    }
}

/* Returns the inner EtherType (or ET_NONE / ET_INNER_ETHERNET) and sets its position and bit. */
static int64_t find_tunnel(const Frame *f, const Ip *ip, const Transport *t, int64_t *inner_pos, int64_t *bit) {
    int64_t proto = ip->proto, l4 = ip->l4pos, ipend = ip->ipend;
    *bit = 0;
    *inner_pos = 0;
    if ((proto == 4 || proto == 41) && l4 < ipend) {
        *inner_pos = l4;
        *bit = ENC_IPIP;
        return proto == 4 ? ET_IPV4 : ET_IPV6;
    }
    if (proto == 47 && l4 + 4 <= ipend) {
        int64_t flags = b16(f, l4), ptype = b16(f, l4 + 2), version = flags & 7;
        int64_t hlen = version == 0
            ? 4 + 4 * ((flags & 0xC000) != 0) + 4 * ((flags & 0x2000) != 0) + 4 * ((flags & 0x1000) != 0)
            : 8 + 4 * ((flags & 0x1000) != 0) + 4 * ((flags & 0x0080) != 0); /* PPTP always has a key */
        int64_t q = l4 + hlen;
        int64_t et = ptype == ET_IPV4 ? ET_IPV4 : (ptype == ET_IPV6 ? ET_IPV6 : ET_NONE);
        if (ptype == 0x6558) et = ET_INNER_ETHERNET;
        if (ptype == 0x88BE) { /* ERSPAN type II: 8-byte header, then Ethernet */
            et = ET_INNER_ETHERNET;
            q += 8;
        }
        if (ptype == 0x880B && version == 1) {
            int64_t qp = b16(f, q) == 0xFF03 ? q + 2 : q;
            int64_t pproto = b16(f, qp);
            if (pproto == 0x0021) et = ET_IPV4;
            if (pproto == 0x0057) et = ET_IPV6;
            q = qp + 2;
        }
        int valid = et != ET_NONE && q < ipend && version <= 1;
        *inner_pos = q;
        *bit = valid ? ENC_GRE : 0;
        return valid ? et : ET_NONE;
    }
    if (proto != 17) return ET_NONE;
    int64_t result = ET_NONE;
    int64_t p = t->pay_off;
    if ((t->dport == 2152 || t->sport == 2152) && p + 8 <= ipend) { /* GTP-U */
        int64_t fl = b8(f, p);
        int is_gpdu = (fl >> 5) == 1 && (fl & 0x10) != 0 && b8(f, p + 1) == 0xFF;
        int64_t q = (fl & 0x07) != 0 ? p + 12 : p + 8;
        int64_t next_ext = (fl & 0x04) != 0 ? b8(f, p + 11) : 0;
        for (int i = 0; i < MAX_GTP_EXTENSIONS; i++) {
            if (next_ext == 0) break;
            int64_t ext_len = b8(f, q) * 4;
            if (ext_len <= 0) break;
            next_ext = b8(f, q + ext_len - 1);
            q += ext_len;
        }
        int64_t et = version_to_ethertype(f, q);
        int valid = is_gpdu && et != ET_NONE && q < ipend;
        *inner_pos = q;
        *bit = valid ? ENC_GTP : 0;
        result = valid ? et : ET_NONE;
    }
    if (t->dport == 4789 && p + 8 + 14 <= ipend) { /* VXLAN: I flag, then Ethernet */
        int valid = (b8(f, p) & 0x08) != 0;
        *inner_pos = p + 8;
        *bit = valid ? ENC_VXLAN : 0;
        result = valid ? ET_INNER_ETHERNET : ET_NONE;
    }
    return result;
}

/* Flow keys: analyzer.hashing.mix_columns over the canonical endpoints (flows.canonical), the
 * same splitmix64-style mixing, so keys from either decoder are interchangeable. */
static inline uint64_t fmix(uint64_t h) {
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
    return h ^ (h >> 31);
}
static inline uint64_t mix(uint64_t h, uint64_t v) { return fmix((h * 0x9E3779B97F4A7C15ULL) ^ v); }

static inline uint64_t flow_key(int a_is_src, uint64_t sh, uint64_t sl, uint64_t dh, uint64_t dl, int64_t sp,
                                int64_t dp, uint64_t proto) {
    uint64_t h = 0x243F6A8885A308D3ULL;
    h = mix(h, a_is_src ? sh : dh);
    h = mix(h, a_is_src ? sl : dl);
    h = mix(h, a_is_src ? dh : sh);
    h = mix(h, a_is_src ? dl : sl);
    h = mix(h, (uint64_t)(a_is_src ? sp : dp));
    h = mix(h, (uint64_t)(a_is_src ? dp : sp));
    return mix(h, proto);
}

/* Output columns, in the order Python passes them, with their item sizes. */
enum {
    O_STATUS, O_VER, O_PROTO, O_SRC_HI, O_SRC_LO, O_DST_HI, O_DST_LO, O_SPORT, O_DPORT, O_FLAGS, O_SEQ,
    O_L4_OFF, O_L4_LEN, O_ENCAP, O_FRAG_OFF, O_MORE, O_FRAG_ID, O_A_IS_SRC, O_KEY, N_OUT
};
static const Py_ssize_t OUT_SIZES[N_OUT] = {1, 1, 1, 8, 8, 8, 8, 4, 4, 4, 8, 8, 4, 8, 8, 1, 8, 1, 8};

static Py_ssize_t decode_loop(const uint8_t *buf, Py_ssize_t buflen, const int64_t *off, const int64_t *cap,
                              const int32_t *lt, Py_ssize_t n, Py_buffer *o) {
    uint8_t *status = o[O_STATUS].buf, *ver = o[O_VER].buf, *proto = o[O_PROTO].buf, *more = o[O_MORE].buf;
    uint64_t *src_hi = o[O_SRC_HI].buf, *src_lo = o[O_SRC_LO].buf, *dst_hi = o[O_DST_HI].buf,
             *dst_lo = o[O_DST_LO].buf;
    int32_t *sport = o[O_SPORT].buf, *dport = o[O_DPORT].buf, *flags = o[O_FLAGS].buf, *l4len = o[O_L4_LEN].buf;
    int64_t *seq = o[O_SEQ].buf, *l4off = o[O_L4_OFF].buf, *encap = o[O_ENCAP].buf, *frag_off = o[O_FRAG_OFF].buf,
            *frag_id = o[O_FRAG_ID].buf;
    uint8_t *a_is_src = o[O_A_IS_SRC].buf;
    uint64_t *key = o[O_KEY].buf;
    Py_ssize_t too_deep = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t s = off[i], e = off[i] + cap[i];
        if (s < 0) s = 0;
        if (e > buflen) e = buflen;
        Frame f = {buf, e};
        int64_t et, pos, enc;
        int st = link_layer(&f, s, lt[i], &et, &pos, &enc);
        status[i] = (uint8_t)st;
        encap[i] = enc;
        ver[i] = 0; proto[i] = 0;
        src_hi[i] = src_lo[i] = dst_hi[i] = dst_lo[i] = 0;
        sport[i] = dport[i] = flags[i] = 0;
        seq[i] = -1; l4off[i] = 0; l4len[i] = 0;
        frag_off[i] = 0; more[i] = 0; frag_id[i] = 0;
        a_is_src[i] = 0; key[i] = 0;
        if (st != ST_OK) continue;
        for (int depth = 0; depth <= MAX_TUNNEL_DEPTH; depth++) {
            Ip ip;
            Transport t;
            decode_ip(&f, et, pos, &ip);
            if (!ip.ok) {
                if (depth == 0) status[i] = ST_BAD_IP_HEADER;
                break;
            }
            decode_transport(&f, &ip, &t);
            ver[i] = ip.ver;
            proto[i] = (uint8_t)ip.proto;
            src_hi[i] = ip.src_hi; src_lo[i] = ip.src_lo; dst_hi[i] = ip.dst_hi; dst_lo[i] = ip.dst_lo;
            sport[i] = (int32_t)t.sport; dport[i] = (int32_t)t.dport;
            flags[i] = (int32_t)t.flags; seq[i] = t.seq;
            l4off[i] = t.pay_off; l4len[i] = (int32_t)t.pay_len;
            frag_off[i] = ip.frag_off; more[i] = (uint8_t)ip.more; frag_id[i] = ip.frag_id;
            status[i] = t.ok ? ST_OK : ST_TRUNCATED_TRANSPORT;
            if (ip.frag_off != 0 || !t.ok) break;
            int64_t inner_pos, bit;
            int64_t inner_et = find_tunnel(&f, &ip, &t, &inner_pos, &bit);
            if (inner_et == ET_NONE) break;
            if (depth == MAX_TUNNEL_DEPTH) {
                too_deep++;
                break;
            }
            encap[i] |= bit;
            if (inner_et == ET_INNER_ETHERNET) {
                int64_t sub_enc = 0;
                inner_et = inner_pos + 14 <= e ? b16(&f, inner_pos + 12) : ET_NONE;
                inner_pos += 14;
                ethertype_chain(&f, &inner_et, &inner_pos, &sub_enc);
                encap[i] |= sub_enc;
            }
            if (inner_et != ET_IPV4 && inner_et != ET_IPV6) break;
            et = inner_et;
            pos = inner_pos;
        }
        if (status[i] == ST_OK) {
            /* Endpoint A is the smaller (address, port): both directions share one key. */
            uint64_t sh = src_hi[i], sl = src_lo[i], dh = dst_hi[i], dl = dst_lo[i];
            int64_t sp = sport[i], dp = dport[i];
            int a = sh < dh || (sh == dh && (sl < dl || (sl == dl && sp <= dp)));
            a_is_src[i] = (uint8_t)a;
            key[i] = flow_key(a, sh, sl, dh, dl, sp, dp, proto[i]);
        }
    }
    return too_deep;
}

static PyObject *decode_frames(PyObject *self, PyObject *args) {
    PyObject *bufo, *offo, *capo, *lto, *outs;
    if (!PyArg_ParseTuple(args, "OOOOO!", &bufo, &offo, &capo, &lto, &PyTuple_Type, &outs)) return NULL;
    if (PyTuple_GET_SIZE(outs) != N_OUT) {
        PyErr_SetString(PyExc_ValueError, "wrong number of output columns");
        return NULL;
    }
    Py_buffer b, voff, vcap, vlt, o[N_OUT];
    int held = 0, nout = 0;
    PyObject *result = NULL;
    if (PyObject_GetBuffer(bufo, &b, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    held = 1;
    if (PyObject_GetBuffer(offo, &voff, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    held = 2;
    if (PyObject_GetBuffer(capo, &vcap, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    held = 3;
    if (PyObject_GetBuffer(lto, &vlt, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    held = 4;
    Py_ssize_t n = voff.len / 8;
    if (voff.itemsize != 8 || vcap.itemsize != 8 || vlt.itemsize != 4 || vcap.len / 8 != n || vlt.len / 4 != n) {
        PyErr_SetString(PyExc_TypeError, "offsets and lengths must be int64, link types int32, of one length");
        goto done;
    }
    for (; nout < N_OUT; nout++) {
        Py_buffer *v = &o[nout];
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(outs, nout), v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            goto done;
        if (v->itemsize != OUT_SIZES[nout] || v->len / v->itemsize != n) {
            PyErr_Format(PyExc_TypeError, "output column %d has the wrong item size or length", nout);
            PyBuffer_Release(v);
            goto done;
        }
    }
    {
        Py_ssize_t too_deep;
        Py_BEGIN_ALLOW_THREADS
        too_deep = decode_loop((const uint8_t *)b.buf, b.len, (const int64_t *)voff.buf, (const int64_t *)vcap.buf,
                               (const int32_t *)vlt.buf, n, o);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(too_deep);
    }
done:
    for (int k = 0; k < nout; k++) PyBuffer_Release(&o[k]);
    if (held >= 4) PyBuffer_Release(&vlt);
    if (held >= 3) PyBuffer_Release(&vcap);
    if (held >= 2) PyBuffer_Release(&voff);
    PyBuffer_Release(&b);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_frames", decode_frames, METH_VARARGS,
     "decode_frames(buf, data_off, caplen, linktype, outputs) -> frames beyond the tunnel depth"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode", "Compiled frame decoding.", -1, methods};

PyMODINIT_FUNC PyInit__decode(void) { return PyModule_Create(&module); }
