/* srtpdl.h: libsrtp 2 for the benchmark's C tools, taken from inside pylibsrtp's wheel.
 *
 * pylibsrtp ships no libsrtp.so and no headers: its cffi extension (_binding.abi3.so)
 * links libsrtp 2.7 and OpenSSL 3 statically and exports every srtp_* symbol. So the tools
 * dlopen() that extension and look up the few functions they need, which makes the C
 * baseline run exactly the crypto Tureen runs. The extension also needs a dozen CPython
 * symbols (it is a Python module); we never call its module init, so they are defined here
 * as stubs, exported from the executable (built with -rdynamic) so the dynamic loader can
 * resolve them. The policy struct is declared from libsrtp 2's public srtp.h layout; the
 * harness checks its size against pylibsrtp's own cffi declaration (benchmarks/srtpkeys.py).
 *
 * Include once per program (it defines the stubs and the function pointers).
 */
#ifndef SRTPDL_H
#define SRTPDL_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- CPython symbols the extension refers to: never called (no PyInit). --- */
#define SD_STUB(name) \
    __attribute__((visibility("default"), used)) void name(void) { fprintf(stderr, #name " called\n"); abort(); }
SD_STUB(PyArg_UnpackTuple)
SD_STUB(PyErr_Occurred)
SD_STUB(PyEval_RestoreThread)
SD_STUB(PyEval_SaveThread)
SD_STUB(PyImport_ImportModule)
SD_STUB(PyLong_FromLong)
SD_STUB(PyLong_FromVoidPtr)
SD_STUB(PyObject_CallMethod)
SD_STUB(PyObject_Free)
SD_STUB(PyObject_Malloc)
SD_STUB(_Py_Dealloc)
__attribute__((visibility("default"), used)) char _Py_NoneStruct[64];

/* --- libsrtp 2 types (public ABI of srtp.h, 2.x) --- */
typedef void *sd_srtp_t;

typedef struct {
    uint32_t cipher_type;
    int cipher_key_len;
    uint32_t auth_type;
    int auth_key_len;
    int auth_tag_len;
    int sec_serv;
} sd_crypto_policy;

typedef struct sd_policy {
    struct { int type; unsigned int value; } ssrc; /* 1 specific, 2 any inbound, 3 any outbound */
    sd_crypto_policy rtp;
    sd_crypto_policy rtcp;
    unsigned char *key;
    void **keys;
    unsigned long num_master_keys;
    void *deprecated_ekt;
    unsigned long window_size;
    int allow_repeat_tx;
    int *enc_xtn_hdr;
    int enc_xtn_hdr_count;
    struct sd_policy *next;
} sd_policy;

_Static_assert(sizeof(sd_policy) == 128, "libsrtp 2 srtp_policy_t is 128 bytes on LP64");

#define SD_SSRC_SPECIFIC 1
#define SD_SSRC_ANY_INBOUND 2
#define SD_SSRC_ANY_OUTBOUND 3
#define SD_MAX_TRAILER 16 /* GCM tag; CM-80 appends 10 */

static int (*sd_init)(void);
static int (*sd_create)(sd_srtp_t *, const sd_policy *);
static int (*sd_protect)(sd_srtp_t, void *, int *);
static int (*sd_unprotect)(sd_srtp_t, void *, int *);
static int (*sd_set_stream_roc)(sd_srtp_t, uint32_t, uint32_t);
static int (*sd_get_stream_roc)(sd_srtp_t, uint32_t, uint32_t *);
static void (*sd_policy_cm80)(sd_crypto_policy *);
static void (*sd_policy_gcm128)(sd_crypto_policy *);
static int sd_gcm; /* the profile of this run: 1 AEAD_AES_128_GCM, 0 AES_CM_128_HMAC_SHA1_80 */

static void *sd_sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p) { fprintf(stderr, "srtpdl: %s not found: %s\n", name, dlerror()); exit(2); }
    return p;
}

/* Load libsrtp from `path` (pylibsrtp/_binding*.so) for profile "gcm" or "cm". */
static void sd_load(const char *path, const char *profile) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "srtpdl: dlopen %s: %s\n", path, dlerror()); exit(2); }
    *(void **)&sd_init = sd_sym(h, "srtp_init");
    *(void **)&sd_create = sd_sym(h, "srtp_create");
    *(void **)&sd_protect = sd_sym(h, "srtp_protect");
    *(void **)&sd_unprotect = sd_sym(h, "srtp_unprotect");
    *(void **)&sd_set_stream_roc = sd_sym(h, "srtp_set_stream_roc");
    *(void **)&sd_get_stream_roc = sd_sym(h, "srtp_get_stream_roc");
    /* libsrtp 2 defines ..._aes_cm_128_hmac_sha1_80 as a macro for the rtp default. */
    *(void **)&sd_policy_cm80 = sd_sym(h, "srtp_crypto_policy_set_rtp_default");
    *(void **)&sd_policy_gcm128 = sd_sym(h, "srtp_crypto_policy_set_aes_gcm_128_16_auth");
    if (!strcmp(profile, "gcm")) sd_gcm = 1;
    else if (!strcmp(profile, "cm")) sd_gcm = 0;
    else { fprintf(stderr, "srtpdl: unknown profile %s\n", profile); exit(2); }
    if (sd_init()) { fprintf(stderr, "srtpdl: srtp_init failed\n"); exit(2); }
}

static int sd_key_len(void) { return sd_gcm ? 28 : 30; } /* master key + salt */

/* One session for one direction: `ssrc_type` SD_SSRC_*, `ssrc` for SD_SSRC_SPECIFIC,
 * `hex` the master key || salt. Same policy as Tureen's SrtpContext (replay window 1024,
 * repeat tx allowed). */
static sd_srtp_t sd_session(const char *hex, int ssrc_type, uint32_t ssrc) {
    unsigned char key[64];
    int n = (int)strlen(hex) / 2;
    if (n != sd_key_len()) { fprintf(stderr, "srtpdl: key of %d bytes, want %d\n", n, sd_key_len()); exit(2); }
    for (int i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) { fprintf(stderr, "srtpdl: bad key hex\n"); exit(2); }
        key[i] = (unsigned char)v;
    }
    sd_policy p;
    memset(&p, 0, sizeof p);
    if (sd_gcm) { sd_policy_gcm128(&p.rtp); sd_policy_gcm128(&p.rtcp); }
    else { sd_policy_cm80(&p.rtp); sd_policy_cm80(&p.rtcp); }
    p.ssrc.type = ssrc_type;
    p.ssrc.value = ssrc;
    p.key = key;
    p.window_size = 1024;
    p.allow_repeat_tx = 1;
    sd_srtp_t s = NULL;
    int rc = sd_create(&s, &p);
    if (rc) { fprintf(stderr, "srtpdl: srtp_create failed (%d)\n", rc); exit(2); }
    return s;
}

#endif
