/* Verified visitor identity: the host page passes a JWT (HS256) signed with the site's identity
 * secret, with `sub` and a required `exp`, so an identity can be neither spoofed nor replayed after
 * it expires (the gap in timestamp-less identifier hashes). Pure C over jansson and libcrypto. */
#ifndef JD_IDENTITY_H
#define JD_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    JD_IDENTITY_OK = 0,
    JD_IDENTITY_MALFORMED,     /* not three base64url parts, bad JSON, no sub/exp, alg not HS256 */
    JD_IDENTITY_BAD_SIGNATURE, /* the HMAC does not match: tampered or wrong secret */
    JD_IDENTITY_EXPIRED,       /* exp is in the past */
    JD_IDENTITY_NO_SECRET,     /* the site has no identity secret configured */
} jd_identity_result;

typedef struct jd_identity {
    char subject[129];
    char email[255];
    int64_t exp;
} jd_identity;

/* Verifies token with secret at time now (Unix seconds). Fills *out on JD_IDENTITY_OK. */
jd_identity_result jd_identity_verify(const char *token, const char *secret, int64_t now,
                                      jd_identity *out);

/* A human sentence for a result. */
const char *jd_identity_reason(jd_identity_result result);

/* Signs {"sub":subject,"exp":exp} with secret into out (for tests and journeyctl). Returns false
 * when out is too small. */
bool jd_identity_sign(const char *subject, int64_t exp, const char *secret, char *out,
                      size_t out_len) __attribute__((warn_unused_result));

#endif
