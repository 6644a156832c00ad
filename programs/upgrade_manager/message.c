/*
 * The approval message, rebuilt on chain from the governance key and the proposal, so a
 * relayed signature is checked against what the proposal really says rather than bytes
 * the relayer chose. Must match core/approval.py (ApprovalSubject.message, envelope)
 * and client.py (approval_text) byte for byte; the tests sign the Python text and the
 * program refuses any difference.
 */
#include "upgrade_manager.h"

/* Legacy (Agave 1.18/2.x): "\xffsolana offchain" | version 0 | format 0 | u16 length. */
#define LEGACY_HEADER 20
/* Standard v0: "\xffsolana offchain" | version 0 | application domain (32) | format
 * | signer count | signers (32 each) | u16 length; this program accepts one signer. */
#define STANDARD_DOMAIN_AT 17
#define STANDARD_FORMAT_AT 49
#define STANDARD_COUNT_AT 50
#define STANDARD_SIGNER_AT 51
#define STANDARD_HEADER (STANDARD_SIGNER_AT + 32 + 2)

static const char BASE58[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
static const char HEX[] = "0123456789abcdef";
static const char SIGNING_DOMAIN[] = "\xffsolana offchain";

/* A write cursor. No bounds checks per byte: the longest text (a config change naming
 * MAX_MEMBERS keys) is under 1,000 bytes, and build_text is only called with room for
 * MAX_TEXT (MESSAGE_CAP); _Static_assert below keeps that true. */
typedef struct {
  uint8_t *w;
} Text;

_Static_assert(220 + 60 + 45 * MAX_MEMBERS + 5 * 20 < MAX_TEXT, "approval text fits");

static inline void put(Text *t, const char *s, uint64_t n) {
  uint8_t *w = t->w;
  for (uint64_t i = 0; i < n; i++) w[i] = (uint8_t)s[i];
  t->w = w + n;
}

#define PUT(t, literal) put((t), SOL_STR(literal))

static inline void put_char(Text *t, char c) { *t->w++ = (uint8_t)c; }

static void put_u64(Text *t, uint64_t value) {
  uint8_t digits[20];
  int n = 0;
  do {
    digits[n++] = (uint8_t)('0' + value % 10);
    value /= 10;
  } while (value);
  while (n) *t->w++ = digits[--n];
}

static void put_hex(Text *t, const uint8_t *bytes, uint64_t n) {
  uint8_t *w = t->w;
  for (uint64_t i = 0; i < n; i++) {
    w[2 * i] = (uint8_t)HEX[bytes[i] >> 4];
    w[2 * i + 1] = (uint8_t)HEX[bytes[i] & 0xf];
  }
  t->w = w + 2 * n;
}

/* Base58 (Bitcoin alphabet), five digits per long division: 58^5 < 2^32, so each step
 * divides eight 32-bit limbs with 64-bit arithmetic (~10 steps for a key, not 44). */
static void put_pubkey(Text *t, const SolPubkey *key) {
  const uint64_t chunk = 656356768ULL; /* 58^5 */
  uint64_t limbs[8]; /* 32-bit values in 64-bit slots: BPF v2 has no 32-bit ALU */
  for (int i = 0; i < 8; i++) {
    const uint8_t *p = key->x + 4 * i;
    limbs[i] = ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
  }
  uint8_t digits[50]; /* least significant first */
  uint64_t n = 0;
  uint64_t first = 0;
  while (first < 8) {
    if (limbs[first] == 0) {
      first++;
      continue;
    }
    uint64_t rem = 0;
    for (uint64_t i = first; i < 8; i++) {
      uint64_t cur = (rem << 32) | limbs[i];
      uint64_t q = cur / chunk;
      limbs[i] = q;
      rem = cur - q * chunk;
    }
    for (uint64_t k = 0; k < 5; k++) {
      uint64_t q = rem / 58;
      digits[n++] = (uint8_t)(rem - q * 58);
      rem = q;
    }
  }
  while (n > 0 && digits[n - 1] == 0) n--;
  /* Each leading zero byte is a leading '1'. */
  for (int i = 0; i < SIZE_PUBKEY && key->x[i] == 0; i++) *t->w++ = '1';
  while (n) *t->w++ = (uint8_t)BASE58[digits[--n]];
}

static void put_upgrade_target(Text *t, const Proposal *p) {
  PUT(t, "program: ");
  put_pubkey(t, &p->program);
  PUT(t, "; buffer: ");
  put_pubkey(t, &p->buffer);
  PUT(t, "; sha256: ");
  put_hex(t, p->buffer_hash, 32);
}

/* The approval text for `action` on `p` in `text` (room for MAX_TEXT); its length, or
 * 0 if it would not fit. */
static uint64_t build_text(const SolPubkey *governance, const Proposal *p, uint8_t action,
                           uint8_t *text) {
  Text t = {text};
  PUT(&t, "solana-runbooks v2; action: ");
  if (action == ACTION_APPROVE) {
    PUT(&t, "approve");
  } else if (action == ACTION_REJECT) {
    PUT(&t, "reject");
  } else {
    PUT(&t, "cancel");
  }
  /* The genesis hash: a sign-off given on one cluster never counts on another. */
  PUT(&t, "; cluster: ");
  put_pubkey(&t, (const SolPubkey *)p->genesis_hash);
  PUT(&t, "; governance: ");
  put_pubkey(&t, governance);
  PUT(&t, "; proposal: ");
  put_u64(&t, p->index);
  PUT(&t, "; ");
  switch (p->kind) {
    case KIND_UPGRADE:
      /* Exactly core.approval.ApprovalSubject.message: no kind field. */
      put_upgrade_target(&t, p);
      break;
    case KIND_EMERGENCY_UPGRADE:
      PUT(&t, "kind: emergency-upgrade; ");
      put_upgrade_target(&t, p);
      break;
    case KIND_SET_AUTHORITY:
      PUT(&t, "kind: set-authority; program: ");
      put_pubkey(&t, &p->program);
      PUT(&t, "; new_authority: ");
      put_pubkey(&t, &p->new_authority);
      break;
    default:
      PUT(&t, "kind: config; threshold: ");
      put_u64(&t, p->new_threshold);
      PUT(&t, "; timelock: ");
      put_u64(&t, p->new_timelock);
      PUT(&t, "; emergency_threshold: ");
      put_u64(&t, p->new_emergency_threshold);
      PUT(&t, "; emergency_timelock: ");
      put_u64(&t, p->new_emergency_timelock);
      PUT(&t, "; members: ");
      for (uint8_t i = 0; i < p->new_member_count && i < MAX_MEMBERS; i++) {
        if (i) put_char(&t, ',');
        put_pubkey(&t, &p->new_members[i]);
      }
      break;
  }
  uint64_t len = (uint64_t)(t.w - text);
  return len > MAX_TEXT ? 0 : len;
}

static bool same_bytes(const uint8_t *a, const uint8_t *b, uint64_t n) {
  int diff = 1;
  sol_memcmp_(a, b, n, &diff);
  return diff == 0;
}

static bool all_zero(const uint8_t *bytes, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    if (bytes[i]) return false;
  }
  return true;
}

/* The standard v0 envelope around the `len` text bytes in `scratch`, one signer. */
static uint64_t check_standard(const SolPubkey *governance, const SignedMessage *m,
                               const uint8_t *scratch, uint64_t len) {
  const uint8_t *msg = m->msg;
  uint64_t size = m->size;
  if (size < STANDARD_SIGNER_AT) return E_MESSAGE_MISMATCH;
  const uint8_t *domain = msg + STANDARD_DOMAIN_AT;
  if (!all_zero(domain, 32) && !same_bytes(domain, governance->x, 32)) {
    return E_ENVELOPE_APPLICATION_DOMAIN;
  }
  if (msg[STANDARD_FORMAT_AT] != 0) return E_ENVELOPE_FORMAT;
  if (msg[STANDARD_COUNT_AT] != 1) return E_ENVELOPE_SIGNER_COUNT;
  if (size < STANDARD_HEADER) return E_ENVELOPE_LENGTH;
  if (!same_bytes(msg + STANDARD_SIGNER_AT, m->signer->x, 32)) return E_ENVELOPE_SIGNER;
  uint64_t declared = sol_read_u16(msg + STANDARD_HEADER - 2);
  if (declared != len || size != STANDARD_HEADER + declared) return E_ENVELOPE_LENGTH;
  if (!same_bytes(msg + STANDARD_HEADER, scratch, len)) return E_MESSAGE_MISMATCH;
  return SUCCESS;
}

uint64_t check_signed_message(const SolPubkey *governance, const Proposal *p, uint8_t action,
                              const SignedMessage *m, uint8_t *scratch) {
  const uint8_t *msg = m->msg;
  uint64_t size = m->size;
  uint64_t len = build_text(governance, p, action, scratch);
  if (len == 0) return E_OVERFLOW;
  if (size < LEGACY_HEADER || !same_bytes(msg, (const uint8_t *)SIGNING_DOMAIN, 16) ||
      msg[16] != 0) {
    return E_MESSAGE_MISMATCH;
  }
  /* Legacy-shaped: format 0 where the standard form has its domain, and a length that
   * spans exactly the rest. */
  if (msg[17] == 0 && LEGACY_HEADER + sol_read_u16(msg + 18) == size) {
    if (size == LEGACY_HEADER + len && same_bytes(msg + LEGACY_HEADER, scratch, len)) {
      return SUCCESS;
    }
    /* A standard envelope whose application domain happens to look like that header
     * (a governance address starting with a zero byte) still counts. */
    return check_standard(governance, m, scratch, len) == SUCCESS ? SUCCESS
                                                                  : E_MESSAGE_MISMATCH;
  }
  return check_standard(governance, m, scratch, len);
}
