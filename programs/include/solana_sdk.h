/*
 * solana_sdk.h: the small C SDK our on-chain programs are written against.
 *
 * Built with `clang --target=bpfel -mcpu=v2 -O2 -fno-builtin -ffreestanding` and linked
 * by programs/toolchain/build.py (sBPF v0). There is no libc: fixed-width types come from clang's
 * predefined macros, and memcpy/memcmp/memset are explicit loops or syscalls (with
 * -fno-builtin clang never calls them behind our back for loops; a large struct copy
 * may still do so, which the linker reports).
 *
 * Rules the toolchain imposes (see DESIGN.md, "Toolchain"):
 * - each stack frame stays within 512 bytes: keep big structs in the heap region
 *   (SOL_HEAP_START, 32 KiB, zeroed at the start of every instruction);
 * - no writable globals: constants only (`static const`), state lives in accounts;
 * - no signed division, no floating point.
 *
 * Entrypoint: `uint64_t entrypoint(const uint8_t *input)`; return SUCCESS, a builtin
 * error (ERROR_*), or a custom error code 1..2^32-1 (reported as Custom(n)).
 */
#ifndef SOLANA_RUNBOOKS_SDK_H
#define SOLANA_RUNBOOKS_SDK_H

/* ------------------------------------------------------------------ types */

typedef __INT8_TYPE__ int8_t;
typedef __UINT8_TYPE__ uint8_t;
typedef __INT16_TYPE__ int16_t;
typedef __UINT16_TYPE__ uint16_t;
typedef __INT32_TYPE__ int32_t;
typedef __UINT32_TYPE__ uint32_t;
typedef __INT64_TYPE__ int64_t;
typedef __UINT64_TYPE__ uint64_t;
typedef __SIZE_TYPE__ size_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)
#define UINT8_MAX 0xff
#define UINT64_MAX 0xffffffffffffffffULL

#define SOL_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Turn a string literal into (pointer, length) for sol_log_ and seeds. */
#define SOL_STR(s) (s), (sizeof(s) - 1)

/* ------------------------------------------------------------ error codes */

#define SUCCESS 0
/* Builtin errors live in the upper 32 bits; custom errors are 1..2^32-1. */
#define TO_BUILTIN(error) ((uint64_t)(error) << 32)
#define ERROR_CUSTOM_ZERO TO_BUILTIN(1)
#define ERROR_INVALID_ARGUMENT TO_BUILTIN(2)
#define ERROR_INVALID_INSTRUCTION_DATA TO_BUILTIN(3)
#define ERROR_INVALID_ACCOUNT_DATA TO_BUILTIN(4)
#define ERROR_ACCOUNT_DATA_TOO_SMALL TO_BUILTIN(5)
#define ERROR_INSUFFICIENT_FUNDS TO_BUILTIN(6)
#define ERROR_INCORRECT_PROGRAM_ID TO_BUILTIN(7)
#define ERROR_MISSING_REQUIRED_SIGNATURES TO_BUILTIN(8)
#define ERROR_ACCOUNT_ALREADY_INITIALIZED TO_BUILTIN(9)
#define ERROR_UNINITIALIZED_ACCOUNT TO_BUILTIN(10)
#define ERROR_NOT_ENOUGH_ACCOUNT_KEYS TO_BUILTIN(11)
#define ERROR_ACCOUNT_BORROW_FAILED TO_BUILTIN(12)
#define ERROR_MAX_SEED_LENGTH_EXCEEDED TO_BUILTIN(13)
#define ERROR_INVALID_SEEDS TO_BUILTIN(14)
#define ERROR_BORSH_IO_ERROR TO_BUILTIN(15)
#define ERROR_ACCOUNT_NOT_RENT_EXEMPT TO_BUILTIN(16)
#define ERROR_UNSUPPORTED_SYSVAR TO_BUILTIN(17)
#define ERROR_ILLEGAL_OWNER TO_BUILTIN(18)
#define ERROR_MAX_ACCOUNTS_DATA_ALLOCATIONS_EXCEEDED TO_BUILTIN(19)
#define ERROR_INVALID_ACCOUNT_DATA_REALLOC TO_BUILTIN(20)
#define ERROR_MAX_INSTRUCTION_TRACE_LENGTH_EXCEEDED TO_BUILTIN(21)
#define ERROR_BUILTIN_PROGRAMS_MUST_CONSUME_COMPUTE_UNITS TO_BUILTIN(22)
#define ERROR_INVALID_ACCOUNT_OWNER TO_BUILTIN(23)
#define ERROR_ARITHMETIC_OVERFLOW TO_BUILTIN(24)
#define ERROR_IMMUTABLE TO_BUILTIN(25)
#define ERROR_INCORRECT_AUTHORITY TO_BUILTIN(26)

/* ------------------------------------------------------------- constants */

#define SIZE_PUBKEY 32
#define MAX_PERMITTED_DATA_INCREASE (10 * 1024) /* realloc room after each account's data */
#define MAX_SEEDS 16
#define MAX_SEED_LEN 32
#define SOL_HEAP_START ((uint8_t *)0x300000000ULL)
#define SOL_HEAP_SIZE (32 * 1024)
#define NON_DUP_MARKER 0xff

/* ------------------------------------------------------------------ pubkeys */

typedef struct {
  uint8_t x[SIZE_PUBKEY];
} SolPubkey;

/* Well-known addresses, as initializers: `static const SolPubkey id = SYSTEM_PROGRAM_ID;` */
#define SYSTEM_PROGRAM_ID {{0}}
/* Sysvar1nstructions1111111111111111111111111 */
#define SYSVAR_INSTRUCTIONS_ID                                                         \
  {{0x06, 0xa7, 0xd5, 0x17, 0x18, 0x7b, 0xd1, 0x66, 0x35, 0xda, 0xd4, 0x04, 0x55,      \
    0xfd, 0xc2, 0xc0, 0xc1, 0x24, 0xc6, 0x8f, 0x21, 0x56, 0x75, 0xa5, 0xdb, 0xba,      \
    0xcb, 0x5f, 0x08, 0x00, 0x00, 0x00}}
/* SysvarC1ock11111111111111111111111111111111 */
#define SYSVAR_CLOCK_ID                                                                \
  {{0x06, 0xa7, 0xd5, 0x17, 0x18, 0xc7, 0x74, 0xc9, 0x28, 0x56, 0x63, 0x98, 0x69,      \
    0x1d, 0x5e, 0xb6, 0x8b, 0x5e, 0xb8, 0xa3, 0x9b, 0x4b, 0x6d, 0x5c, 0x73, 0x55,      \
    0x5b, 0x21, 0x00, 0x00, 0x00, 0x00}}
/* SysvarRent111111111111111111111111111111111 */
#define SYSVAR_RENT_ID                                                                 \
  {{0x06, 0xa7, 0xd5, 0x17, 0x19, 0x2c, 0x5c, 0x51, 0x21, 0x8c, 0xc9, 0x4c, 0x3d,      \
    0x4a, 0xf1, 0x7f, 0x58, 0xda, 0xee, 0x08, 0x9b, 0xa1, 0xfd, 0x44, 0xe3, 0xdb,      \
    0xd9, 0x8a, 0x00, 0x00, 0x00, 0x00}}
/* BPFLoaderUpgradeab1e11111111111111111111111 */
#define BPF_LOADER_UPGRADEABLE_ID                                                      \
  {{0x02, 0xa8, 0xf6, 0x91, 0x4e, 0x88, 0xa1, 0xb0, 0xe2, 0x10, 0x15, 0x3e, 0xf7,      \
    0x63, 0xae, 0x2b, 0x00, 0xc2, 0xb9, 0x3d, 0x16, 0xc1, 0x24, 0xd2, 0xc0, 0x53,      \
    0x7a, 0x10, 0x04, 0x80, 0x00, 0x00}}
/* Ed25519SigVerify111111111111111111111111111 */
#define ED25519_PROGRAM_ID                                                             \
  {{0x03, 0x7d, 0x46, 0xd6, 0x7c, 0x93, 0xfb, 0xbe, 0x12, 0xf9, 0x42, 0x8f, 0x83,      \
    0x8d, 0x40, 0xff, 0x05, 0x70, 0x74, 0x49, 0x27, 0xf4, 0x8a, 0x64, 0xfc, 0xca,      \
    0x70, 0x44, 0x80, 0x00, 0x00, 0x00}}

/* --------------------------------------------------------- byte helpers */

/* Plain loops: there is no libc, and -fno-builtin keeps clang from calling one. */
static inline void sol_memcpy(void *dst, const void *src, uint64_t n) {
  uint8_t *d = (uint8_t *)dst;
  const uint8_t *s = (const uint8_t *)src;
  for (uint64_t i = 0; i < n; i++) d[i] = s[i];
}

static inline void sol_memset(void *dst, uint8_t value, uint64_t n) {
  uint8_t *d = (uint8_t *)dst;
  for (uint64_t i = 0; i < n; i++) d[i] = value;
}

/* Returns 0 when equal, like memcmp's sign otherwise. */
static inline int sol_memcmp(const void *a, const void *b, uint64_t n) {
  const uint8_t *x = (const uint8_t *)a;
  const uint8_t *y = (const uint8_t *)b;
  for (uint64_t i = 0; i < n; i++) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

static inline bool sol_is_zero(const void *p, uint64_t n) {
  const uint8_t *x = (const uint8_t *)p;
  for (uint64_t i = 0; i < n; i++) {
    if (x[i]) return false;
  }
  return true;
}

static inline bool SolPubkey_same(const SolPubkey *a, const SolPubkey *b) {
  return sol_memcmp(a, b, SIZE_PUBKEY) == 0;
}

/* Little-endian loads/stores that work at any alignment (instruction data fields). */
static inline uint16_t sol_read_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

static inline uint32_t sol_read_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
         ((uint32_t)p[3] << 24);
}

static inline uint64_t sol_read_u64(const uint8_t *p) {
  return (uint64_t)sol_read_u32(p) | ((uint64_t)sol_read_u32(p + 4) << 32);
}

static inline void sol_write_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Checked arithmetic: returns false on overflow and leaves *out alone. */
static inline bool sol_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (a > UINT64_MAX - b) return false;
  *out = a + b;
  return true;
}

/* In 32-bit halves: clang turns the usual `b > MAX / a` test into a 128-bit multiply,
 * which the BPF target cannot call. */
static inline bool sol_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  uint64_t a_hi = a >> 32, a_lo = a & 0xffffffffULL;
  uint64_t b_hi = b >> 32, b_lo = b & 0xffffffffULL;
  if (a_hi && b_hi) return false;
  uint64_t cross = a_hi * b_lo + a_lo * b_hi; /* one term is zero: cannot overflow */
  if (cross >> 32) return false;
  uint64_t low = a_lo * b_lo;
  uint64_t result = low + (cross << 32);
  if (result < low) return false;
  *out = result;
  return true;
}

/* ------------------------------------------------------ accounts / input */

/* One account of the instruction, as sol_deserialize fills it. `data` and `lamports`
 * point into the input region: writes to them are the program's writes. */
typedef struct {
  SolPubkey *key;
  uint64_t *lamports;
  uint64_t data_len;
  uint8_t *data;
  SolPubkey *owner;
  uint64_t rent_epoch;
  bool is_signer;
  bool is_writable;
  bool executable;
} SolAccountInfo;

typedef struct {
  SolAccountInfo *ka;       /* caller-provided array of ka_num entries */
  uint64_t ka_num;          /* in: capacity of ka; out: accounts stored (<= capacity) */
  uint64_t ka_total;        /* out: accounts the instruction really has */
  const uint8_t *data;      /* instruction data */
  uint64_t data_len;
  const SolPubkey *program_id;
} SolParameters;

/*
 * Parse the aligned input format (loader v2/v3):
 *   u64 num_accounts; per account: u8 dup (0xff = not a duplicate, else index of the
 *   original, then 7 pad bytes), or u8 is_signer, u8 is_writable, u8 executable, 4 pad,
 *   key[32], owner[32], u64 lamports, u64 data_len, data[data_len], 10 KiB realloc room,
 *   pad to 8, u64 rent_epoch; then u64 instruction data length, the data, program id[32].
 * Stores at most params->ka_num accounts (the rest are skipped) and returns false only
 * if params is NULL or ka is NULL with a nonzero capacity.
 */
static inline bool sol_deserialize(const uint8_t *input, SolParameters *params) {
  if (params == NULL || (params->ka == NULL && params->ka_num)) return false;
  uint64_t capacity = params->ka_num;
  uint64_t total = *(const uint64_t *)input;
  input += sizeof(uint64_t);
  uint64_t stored = 0;
  for (uint64_t i = 0; i < total; i++) {
    uint8_t dup = *input;
    input += 1;
    if (dup == NON_DUP_MARKER) {
      SolAccountInfo info;
      info.is_signer = *input != 0;
      info.is_writable = *(input + 1) != 0;
      info.executable = *(input + 2) != 0;
      input += 3 + 4;
      info.key = (SolPubkey *)input;
      input += SIZE_PUBKEY;
      info.owner = (SolPubkey *)input;
      input += SIZE_PUBKEY;
      info.lamports = (uint64_t *)input;
      input += sizeof(uint64_t);
      info.data_len = *(const uint64_t *)input;
      input += sizeof(uint64_t);
      info.data = (uint8_t *)input;
      input += info.data_len + MAX_PERMITTED_DATA_INCREASE;
      input = (const uint8_t *)(((uint64_t)input + 7) & ~7ULL);
      info.rent_epoch = *(const uint64_t *)input;
      input += sizeof(uint64_t);
      if (i < capacity) params->ka[i] = info;
    } else {
      if (i < capacity && dup < i) params->ka[i] = params->ka[dup];
      input += 7;
    }
    if (i < capacity) stored = i + 1;
  }
  params->ka_num = stored;
  params->ka_total = total;
  params->data_len = *(const uint64_t *)input;
  input += sizeof(uint64_t);
  params->data = input;
  input += params->data_len;
  params->program_id = (const SolPubkey *)input;
  return true;
}

/* Resize an account in place (<= +10 KiB over its size at the start of the
 * instruction; the runtime enforces the limit and rent). The serialized data_len just
 * before the data is what the runtime reads back. Bytes gained are zero. */
static inline void sol_account_resize(SolAccountInfo *account, uint64_t new_len) {
  *(uint64_t *)(account->data - sizeof(uint64_t)) = new_len;
  account->data_len = new_len;
}

/* --------------------------------------------------------------- syscalls */

void sol_log_(const char *message, uint64_t len);
void sol_log_64_(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
void sol_log_pubkey(const SolPubkey *pubkey);
void sol_log_compute_units_(void);
void sol_panic_(const char *file, uint64_t len, uint64_t line, uint64_t column);

typedef struct {
  const uint8_t *addr;
  uint64_t len;
} SolBytes;

void sol_log_data(const SolBytes *fields, uint64_t count);
uint64_t sol_sha256(const SolBytes *bytes, int count, uint8_t *result);

void sol_memcpy_(void *dst, const void *src, uint64_t n);
void sol_memmove_(void *dst, const void *src, uint64_t n);
void sol_memset_(void *dst, uint8_t value, uint64_t n);
void sol_memcmp_(const void *a, const void *b, uint64_t n, int *result);

#define sol_log(literal) sol_log_(SOL_STR(literal))
#define sol_panic() sol_panic_(__FILE__, sizeof(__FILE__) - 1, __LINE__, 0)

/* Clock sysvar (sol_get_clock_sysvar fills 40 bytes). */
typedef struct {
  uint64_t slot;
  int64_t epoch_start_timestamp;
  uint64_t epoch;
  uint64_t leader_schedule_epoch;
  int64_t unix_timestamp;
} SolClock;

/* Rent sysvar (sol_get_rent_sysvar fills these 24 bytes, repr(C); the f64 stays raw bits). */
typedef struct {
  uint64_t lamports_per_byte_year;
  uint64_t exemption_threshold_f64_bits;
  uint8_t burn_percent;
} SolRent;

uint64_t sol_get_clock_sysvar(SolClock *clock);
uint64_t sol_get_rent_sysvar(SolRent *rent);

/*
 * Rent-exempt minimum for `data_len` bytes: (128 + data_len) * lamports_per_byte_year *
 * exemption_threshold, without floating point. Returns false if the threshold is not a
 * whole number (it is 2.0 on every cluster today) or on overflow.
 */
static inline bool sol_rent_minimum_balance(const SolRent *rent, uint64_t data_len,
                                            uint64_t *out) {
  uint64_t bits = rent->exemption_threshold_f64_bits;
  if (bits >> 63) return false;
  int64_t exponent = (int64_t)((bits >> 52) & 0x7ff) - 1023;
  uint64_t mantissa = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
  if (exponent < 0 || exponent > 52) return false;
  uint64_t shift = (uint64_t)(52 - exponent);
  if (mantissa & ((1ULL << shift) - 1)) return false;
  uint64_t threshold = mantissa >> shift;
  uint64_t per_year;
  if (!sol_mul_u64(128 + data_len, rent->lamports_per_byte_year, &per_year)) return false;
  return sol_mul_u64(per_year, threshold, out);
}

/* -------------------------------------------------------- PDAs and CPI */

typedef struct {
  const uint8_t *addr;
  uint64_t len;
} SolSignerSeed;

typedef struct {
  const SolSignerSeed *addr;
  uint64_t len;
} SolSignerSeeds;

/* ~1.5 k CU. Returns SUCCESS or an error (seeds give a point on the curve). */
uint64_t sol_create_program_address(const SolSignerSeed *seeds, int seeds_len,
                                    const SolPubkey *program_id, SolPubkey *address);
/* ~7.6 k CU: find once, store the bump, then use sol_create_program_address. */
uint64_t sol_try_find_program_address(const SolSignerSeed *seeds, int seeds_len,
                                      const SolPubkey *program_id, SolPubkey *address,
                                      uint8_t *bump_seed);

typedef struct {
  SolPubkey *pubkey;
  bool is_writable;
  bool is_signer;
} SolAccountMeta;

typedef struct {
  SolPubkey *program_id;
  SolAccountMeta *accounts;
  uint64_t account_len;
  uint8_t *data;
  uint64_t data_len;
} SolInstruction;

/* Every account the instruction names must be among account_infos (the callee's
 * program account too: pass its SolAccountInfo). Signer seeds sign for PDAs. */
uint64_t sol_invoke_signed_c(const SolInstruction *instruction,
                             const SolAccountInfo *account_infos, int account_infos_len,
                             const SolSignerSeeds *signers_seeds, int signers_seeds_len);

static inline uint64_t sol_invoke(const SolInstruction *instruction,
                                  const SolAccountInfo *account_infos,
                                  int account_infos_len) {
  return sol_invoke_signed_c(instruction, account_infos, account_infos_len, NULL, 0);
}

void sol_set_return_data(const uint8_t *data, uint64_t len);

/* System program Transfer{lamports} from `from` (signer, system-owned) to `to`. */
static inline uint64_t sol_system_transfer(SolAccountInfo *from, SolAccountInfo *to,
                                           SolAccountInfo *system_program,
                                           uint64_t lamports,
                                           const SolSignerSeeds *seeds, int seeds_len) {
  uint8_t data[12];
  data[0] = 2; /* SystemInstruction::Transfer (u32 LE tag) */
  data[1] = data[2] = data[3] = 0;
  sol_write_u64(data + 4, lamports);
  SolAccountMeta metas[2] = {{from->key, true, true}, {to->key, true, false}};
  SolInstruction ix = {system_program->key, metas, 2, data, sizeof(data)};
  SolAccountInfo infos[3] = {*from, *to, *system_program};
  return sol_invoke_signed_c(&ix, infos, 3, seeds, seeds_len);
}

/* ------------------------------------------------- Instructions sysvar */

/*
 * The Instructions sysvar account's data:
 *   u16 n | u16 offsets[n] | per instruction (at its offset): u16 num_accounts,
 *   {u8 flags (bit0 signer, bit1 writable), key[32]} x num_accounts, program_id[32],
 *   u16 data_len, data | u16 current_index (the last two bytes).
 * Always check the account passed is the sysvar (SYSVAR_INSTRUCTIONS_ID) first.
 */
typedef struct {
  const uint8_t *accounts;     /* num_accounts records of 33 bytes: flags, key */
  uint16_t num_accounts;
  const SolPubkey *program_id;
  const uint8_t *data;
  uint16_t data_len;
} SolIxView;

#define SOL_IX_ACCOUNT_SIGNER 0x1
#define SOL_IX_ACCOUNT_WRITABLE 0x2

static inline bool sol_ix_sysvar_count(const uint8_t *sysvar, uint64_t len, uint16_t *n) {
  if (len < 4) return false;
  *n = sol_read_u16(sysvar);
  return 2 + 2 * (uint64_t)*n + 2 <= len;
}

/* Index of the instruction being executed (the last u16 of the data). */
static inline bool sol_ix_sysvar_current_index(const uint8_t *sysvar, uint64_t len,
                                               uint16_t *index) {
  if (len < 4) return false;
  *index = sol_read_u16(sysvar + len - 2);
  return true;
}

/* View of instruction `index`, bounds-checked against the sysvar data. */
static inline bool sol_ix_sysvar_load(const uint8_t *sysvar, uint64_t len, uint16_t index,
                                      SolIxView *out) {
  uint16_t n;
  if (!sol_ix_sysvar_count(sysvar, len, &n) || index >= n) return false;
  uint64_t end = len - 2; /* the trailing current-index u16 is not instruction data */
  uint64_t at = sol_read_u16(sysvar + 2 + 2 * (uint64_t)index);
  if (at + 2 > end) return false;
  out->num_accounts = sol_read_u16(sysvar + at);
  at += 2;
  out->accounts = sysvar + at;
  at += 33 * (uint64_t)out->num_accounts;
  if (at + SIZE_PUBKEY + 2 > end) return false;
  out->program_id = (const SolPubkey *)(sysvar + at);
  at += SIZE_PUBKEY;
  out->data_len = sol_read_u16(sysvar + at);
  at += 2;
  if (at + out->data_len > end) return false;
  out->data = sysvar + at;
  return true;
}

/* Key and flags of account `i` of a loaded instruction view. */
static inline const SolPubkey *sol_ix_view_account(const SolIxView *view, uint16_t i,
                                                   uint8_t *flags) {
  if (i >= view->num_accounts) return NULL;
  const uint8_t *record = view->accounts + 33 * (uint64_t)i;
  if (flags) *flags = record[0];
  return (const SolPubkey *)(record + 1);
}

#endif /* SOLANA_RUNBOOKS_SDK_H */
