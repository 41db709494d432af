/* JWT HS256 verification with a constant-time signature comparison. Only HS256 is accepted (no
 * "none", no algorithm confusion), and exp is mandatory. */
#include "identity.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Decodes unpadded base64url; returns the length or -1. */
static long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    size_t o = 0;
    unsigned int acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

static size_t b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    unsigned int acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            if (o + 1 >= cap)
                return 0;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits > 0) {
        if (o + 1 >= cap)
            return 0;
        out[o++] = b64url[(acc << (6 - bits)) & 63];
    }
    out[o] = '\0';
    return o;
}

const char *jd_identity_reason(jd_identity_result r)
{
    switch (r) {
    case JD_IDENTITY_OK:
        return "identity verified";
    case JD_IDENTITY_MALFORMED:
        return "identity token is malformed (expected a JWT signed with HS256, with sub and exp)";
    case JD_IDENTITY_BAD_SIGNATURE:
        return "identity token signature does not match (tampered, or signed with another secret)";
    case JD_IDENTITY_EXPIRED:
        return "identity token has expired; the host page must issue a fresh one";
    case JD_IDENTITY_NO_SECRET:
        return "this site accepts no signed identities (no identity secret configured)";
    }
    return "identity token refused";
}

jd_identity_result jd_identity_verify(const char *token, const char *secret, int64_t now,
                                      jd_identity *out)
{
    if (!secret || !secret[0])
        return JD_IDENTITY_NO_SECRET;
    if (!token || strlen(token) > 4096)
        return JD_IDENTITY_MALFORMED;
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
        return JD_IDENTITY_MALFORMED;

    unsigned char mac[EVP_MAX_MD_SIZE], sig[64];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token,
              (size_t)(dot2 - token), mac, &mac_len))
        return JD_IDENTITY_MALFORMED;
    long sig_len = b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig));
    if (sig_len != (long)mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0)
        return JD_IDENTITY_BAD_SIGNATURE;

    unsigned char header[512], payload[2048];
    long hl = b64url_decode(token, (size_t)(dot1 - token), header, sizeof(header));
    long pl = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, sizeof(payload));
    if (hl <= 0 || pl <= 0)
        return JD_IDENTITY_MALFORMED;
    jd_identity_result result = JD_IDENTITY_MALFORMED;
    json_t *h = json_loadb((const char *)header, (size_t)hl, 0, NULL);
    json_t *p = json_loadb((const char *)payload, (size_t)pl, 0, NULL);
    const char *alg = json_string_value(json_object_get(h, "alg"));
    const char *sub = json_string_value(json_object_get(p, "sub"));
    json_t *exp = json_object_get(p, "exp");
    if (!alg || strcmp(alg, "HS256") != 0 || !sub || !sub[0] ||
        strlen(sub) >= sizeof(out->subject) || !json_is_integer(exp))
        goto done;
    if (json_integer_value(exp) <= now) {
        result = JD_IDENTITY_EXPIRED;
        goto done;
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->subject, sizeof(out->subject), "%s", sub);
    const char *email = json_string_value(json_object_get(p, "email"));
    if (email && strlen(email) < sizeof(out->email))
        snprintf(out->email, sizeof(out->email), "%s", email);
    out->exp = json_integer_value(exp);
    result = JD_IDENTITY_OK;
done:
    json_decref(h);
    json_decref(p);
    return result;
}

bool jd_identity_sign(const char *subject, int64_t exp, const char *secret, char *out,
                      size_t out_len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    json_t *payload = json_pack("{s:s, s:I}", "sub", subject, "exp", (json_int_t)exp);
    char *ptext = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!ptext)
        return false;
    size_t n = b64url_encode((const unsigned char *)header, sizeof(header) - 1, out, out_len);
    bool ok = n > 0 && n + 1 < out_len;
    if (ok) {
        out[n++] = '.';
        size_t m = b64url_encode((const unsigned char *)ptext, strlen(ptext), out + n, out_len - n);
        ok = m > 0;
        n += m;
    }
    free(ptext);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!ok || n + 2 >= out_len ||
        !HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, n, mac,
              &mac_len))
        return false;
    out[n++] = '.';
    return b64url_encode(mac, mac_len, out + n, out_len - n) > 0;
}
