/*
 * demo_vault v1: the sample program our upgrade, migration, rollback and kill-switch
 * runbooks operate on. Build name "demo_vault/v1"; client in programs/demo_vault/client.py.
 *
 * Anchor-style wire format: instruction data = sha256("global:<name>")[:8] + LE fields;
 * account data starts with sha256("account:<Name>")[:8]. Errors use Anchor's framework
 * codes and 6000+ for the program's own.
 *
 * Instructions (accounts in order; w = writable, s = signer):
 *   init_config()                      config(w), admin(s)
 *   pause() / unpause()                config(w), admin(s)
 *   initialize(owner: Pubkey, balance: u64)
 *                                      vault(w, s), config
 *   deposit(amount: u64)               vault(w), owner(s), config
 * The client pre-creates vault and config accounts (system create_account, owner = this
 * program, exact sizes below); the program checks owner, size and that they are blank.
 */
#include <solana_sdk.h>

/* sha256("global:<name>")[:8] and sha256("account:<Name>")[:8], read as LE u64. */
#define IX_INIT_CONFIG 0xe70160a8e873eb17ULL
#define IX_PAUSE 0x2fc1794afbdd16d3ULL
#define IX_UNPAUSE 0xffbc8d0a260490a9ULL
#define IX_INITIALIZE 0xed9b980d1f6dafafULL
#define IX_DEPOSIT 0xb6f2e15289c623f2ULL
#define ACCOUNT_VAULT 0x777598022be808d3ULL
#define ACCOUNT_CONFIG 0x82ccfa1ee0aa0c9bULL

/* Anchor framework error codes. */
#define E_INSTRUCTION_MISSING 100
#define E_INSTRUCTION_FALLBACK_NOT_FOUND 101
#define E_INSTRUCTION_DID_NOT_DESERIALIZE 102
#define E_CONSTRAINT_HAS_ONE 2001
#define E_ACCOUNT_DISCRIMINATOR_ALREADY_SET 3000
#define E_ACCOUNT_DISCRIMINATOR_MISMATCH 3002
#define E_ACCOUNT_DID_NOT_DESERIALIZE 3003
#define E_ACCOUNT_NOT_ENOUGH_KEYS 3005
#define E_ACCOUNT_NOT_MUTABLE 3006
#define E_ACCOUNT_OWNED_BY_WRONG_PROGRAM 3007
#define E_ACCOUNT_NOT_SIGNER 3010
/* Program errors. */
#define E_PAUSED 6000
#define E_NOT_MIGRATED 6001 /* used by v2 */
#define E_UNSUPPORTED_LAYOUT 6002
#define E_OVERFLOW 6003

#define LAYOUT_VERSION 1

/* Vault, layout v1 (88 bytes). */
typedef struct {
  uint64_t discriminator;
  uint8_t version;
  uint8_t padding[7];
  SolPubkey owner;
  SolPubkey config;
  uint64_t balance;
} VaultV1;

/* Config (48 bytes): one per deployment; vaults name theirs at initialize. */
typedef struct {
  uint64_t discriminator;
  SolPubkey admin;
  uint8_t paused;
  uint8_t padding[7];
} Config;

_Static_assert(sizeof(VaultV1) == 88, "VaultV1 layout");
_Static_assert(sizeof(Config) == 48, "Config layout");

static uint64_t check_owned(const SolAccountInfo *account, const SolPubkey *program_id,
                            bool writable) {
  if (writable && !account->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(account->owner, program_id)) return E_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  return SUCCESS;
}

/* A blank, program-owned account of exactly `size` bytes, about to be initialized. */
static uint64_t check_blank(const SolAccountInfo *account, const SolPubkey *program_id,
                            uint64_t size) {
  uint64_t err = check_owned(account, program_id, true);
  if (err) return err;
  if (account->data_len != size) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (!sol_is_zero(account->data, 8)) return E_ACCOUNT_DISCRIMINATOR_ALREADY_SET;
  return SUCCESS;
}

static uint64_t load_config(const SolAccountInfo *account, const SolPubkey *program_id,
                            bool writable, Config **out) {
  uint64_t err = check_owned(account, program_id, writable);
  if (err) return err;
  if (account->data_len != sizeof(Config)) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  Config *config = (Config *)account->data;
  if (config->discriminator != ACCOUNT_CONFIG) return E_ACCOUNT_DISCRIMINATOR_MISMATCH;
  *out = config;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t init_config(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 2) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *config_account = &params->ka[0];
  SolAccountInfo *admin = &params->ka[1];
  uint64_t err = check_blank(config_account, params->program_id, sizeof(Config));
  if (err) return err;
  if (!admin->is_signer) return E_ACCOUNT_NOT_SIGNER;
  Config *config = (Config *)config_account->data;
  config->discriminator = ACCOUNT_CONFIG;
  config->admin = *admin->key;
  config->paused = 0;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t set_paused(SolParameters *params, uint8_t paused) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 2) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  Config *config;
  uint64_t err = load_config(&params->ka[0], params->program_id, true, &config);
  if (err) return err;
  SolAccountInfo *admin = &params->ka[1];
  if (!admin->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!SolPubkey_same(admin->key, &config->admin)) return E_CONSTRAINT_HAS_ONE;
  config->paused = paused;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t initialize(SolParameters *params) {
  if (params->data_len != 8 + 32 + 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 2) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *vault_account = &params->ka[0];
  uint64_t err = check_blank(vault_account, params->program_id, sizeof(VaultV1));
  if (err) return err;
  /* The vault signs its own initialization, so nobody else can claim a fresh account. */
  if (!vault_account->is_signer) return E_ACCOUNT_NOT_SIGNER;
  Config *config;
  err = load_config(&params->ka[1], params->program_id, false, &config);
  if (err) return err;
  VaultV1 *vault = (VaultV1 *)vault_account->data;
  vault->discriminator = ACCOUNT_VAULT;
  vault->version = LAYOUT_VERSION;
  sol_memcpy(&vault->owner, params->data + 8, SIZE_PUBKEY);
  vault->config = *params->ka[1].key;
  vault->balance = sol_read_u64(params->data + 40);
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t deposit(SolParameters *params) {
  if (params->data_len != 8 + 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 3) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *vault_account = &params->ka[0];
  SolAccountInfo *owner = &params->ka[1];
  uint64_t err = check_owned(vault_account, params->program_id, true);
  if (err) return err;
  if (vault_account->data_len < 9) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  VaultV1 *vault = (VaultV1 *)vault_account->data;
  if (vault->discriminator != ACCOUNT_VAULT) return E_ACCOUNT_DISCRIMINATOR_MISMATCH;
  /* A layout this version does not know (e.g. v2 data after a rollback): refuse. */
  if (vault->version != LAYOUT_VERSION) return E_UNSUPPORTED_LAYOUT;
  if (vault_account->data_len != sizeof(VaultV1)) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (!owner->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!SolPubkey_same(owner->key, &vault->owner)) return E_CONSTRAINT_HAS_ONE;
  if (!SolPubkey_same(params->ka[2].key, &vault->config)) return E_CONSTRAINT_HAS_ONE;
  Config *config;
  err = load_config(&params->ka[2], params->program_id, false, &config);
  if (err) return err;
  if (config->paused) return E_PAUSED;
  uint64_t balance;
  if (!sol_add_u64(vault->balance, sol_read_u64(params->data + 8), &balance)) return E_OVERFLOW;
  vault->balance = balance;
  return SUCCESS;
}

uint64_t entrypoint(const uint8_t *input) {
  sol_log("demo_vault v1");
  SolAccountInfo accounts[4];
  SolParameters params = {.ka = accounts, .ka_num = SOL_ARRAY_SIZE(accounts)};
  if (!sol_deserialize(input, &params)) return ERROR_INVALID_ARGUMENT;
  if (params.data_len < 8) return E_INSTRUCTION_MISSING;
  switch (sol_read_u64(params.data)) {
    case IX_INIT_CONFIG:
      return init_config(&params);
    case IX_PAUSE:
      return set_paused(&params, 1);
    case IX_UNPAUSE:
      return set_paused(&params, 0);
    case IX_INITIALIZE:
      return initialize(&params);
    case IX_DEPOSIT:
      return deposit(&params);
    default:
      return E_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
