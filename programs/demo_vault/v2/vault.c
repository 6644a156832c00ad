/*
 * demo_vault v2: the upgrade of demo_vault v1. Build name "demo_vault/v2"; client in
 * programs/demo_vault/client.py. Same wire conventions and instructions as v1, plus
 *
 *   migrate()                          vault(w) [, payer(s, w), system_program]
 *
 * Layout v2 reorders the fields, adds deposits_count and migrated_slot and reserves 64
 * bytes: 168 bytes instead of 88. migrate rewrites a v1 vault in place, growing it by 80
 * bytes (topping its lamports up to rent exemption from the optional payer), and keeps
 * owner, config and balance; on a v2 vault it does nothing, so a retried or repeated
 * migrate is harmless and many can share one transaction. deposit refuses a vault still
 * on layout v1 (E_NOT_MIGRATED) and counts deposits; initialize writes layout v2.
 *
 * Accounts of the other instructions are as in v1:
 *   init_config()                      config(w), admin(s)
 *   pause() / unpause()                config(w), admin(s)
 *   initialize(owner: Pubkey, balance: u64)
 *                                      vault(w, s), config
 *   deposit(amount: u64)               vault(w), owner(s), config
 */
#include <solana_sdk.h>

/* sha256("global:<name>")[:8] and sha256("account:<Name>")[:8], read as LE u64. */
#define IX_INIT_CONFIG 0xe70160a8e873eb17ULL
#define IX_PAUSE 0x2fc1794afbdd16d3ULL
#define IX_UNPAUSE 0xffbc8d0a260490a9ULL
#define IX_INITIALIZE 0xed9b980d1f6dafafULL
#define IX_DEPOSIT 0xb6f2e15289c623f2ULL
#define IX_MIGRATE 0x1ea29eec92e7ea9bULL
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
#define E_NOT_MIGRATED 6001
#define E_UNSUPPORTED_LAYOUT 6002
#define E_OVERFLOW 6003
#define E_RENT_TOP_UP_REQUIRED 6004

#define LAYOUT_VERSION 2

/* Vault, layout v1 (88 bytes): what migrate reads. */
typedef struct {
  uint64_t discriminator;
  uint8_t version;
  uint8_t padding[7];
  SolPubkey owner;
  SolPubkey config;
  uint64_t balance;
} VaultV1;

/* Vault, layout v2 (168 bytes). */
typedef struct {
  uint64_t discriminator;
  uint8_t version;
  uint8_t padding[7];
  uint64_t balance;
  uint64_t deposits_count;
  uint64_t migrated_slot; /* slot at which the vault got this layout */
  SolPubkey owner;
  SolPubkey config;
  uint8_t reserved[64];
} VaultV2;

typedef struct {
  uint64_t discriminator;
  SolPubkey admin;
  uint8_t paused;
  uint8_t padding[7];
} Config;

_Static_assert(sizeof(VaultV1) == 88, "VaultV1 layout");
_Static_assert(sizeof(VaultV2) == 168, "VaultV2 layout");
_Static_assert(sizeof(VaultV2) - sizeof(VaultV1) <= MAX_PERMITTED_DATA_INCREASE, "growth");
_Static_assert(sizeof(Config) == 48, "Config layout");

static uint64_t check_owned(const SolAccountInfo *account, const SolPubkey *program_id,
                            bool writable) {
  if (writable && !account->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(account->owner, program_id)) return E_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  return SUCCESS;
}

static uint64_t check_blank(const SolAccountInfo *account, const SolPubkey *program_id,
                            uint64_t size) {
  uint64_t err = check_owned(account, program_id, true);
  if (err) return err;
  if (account->data_len != size) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (!sol_is_zero(account->data, 8)) return E_ACCOUNT_DISCRIMINATOR_ALREADY_SET;
  return SUCCESS;
}

/* A writable, program-owned vault of any layout; *version is its layout byte. */
static uint64_t load_vault(const SolAccountInfo *account, const SolPubkey *program_id,
                           uint8_t *version) {
  uint64_t err = check_owned(account, program_id, true);
  if (err) return err;
  if (account->data_len < 9) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (*(const uint64_t *)account->data != ACCOUNT_VAULT) return E_ACCOUNT_DISCRIMINATOR_MISMATCH;
  *version = account->data[8];
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

static uint64_t current_slot(uint64_t *slot) {
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != SUCCESS) return ERROR_UNSUPPORTED_SYSVAR;
  *slot = clock.slot;
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
  uint64_t err = check_blank(vault_account, params->program_id, sizeof(VaultV2));
  if (err) return err;
  if (!vault_account->is_signer) return E_ACCOUNT_NOT_SIGNER;
  Config *config;
  err = load_config(&params->ka[1], params->program_id, false, &config);
  if (err) return err;
  uint64_t slot;
  err = current_slot(&slot);
  if (err) return err;
  VaultV2 *vault = (VaultV2 *)vault_account->data;
  vault->discriminator = ACCOUNT_VAULT;
  vault->version = LAYOUT_VERSION;
  vault->balance = sol_read_u64(params->data + 40);
  vault->deposits_count = 0;
  vault->migrated_slot = slot;
  sol_memcpy(&vault->owner, params->data + 8, SIZE_PUBKEY);
  vault->config = *params->ka[1].key;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t deposit(SolParameters *params) {
  if (params->data_len != 8 + 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 3) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *vault_account = &params->ka[0];
  SolAccountInfo *owner = &params->ka[1];
  uint8_t version;
  uint64_t err = load_vault(vault_account, params->program_id, &version);
  if (err) return err;
  if (version == 1) return E_NOT_MIGRATED;
  if (version != LAYOUT_VERSION) return E_UNSUPPORTED_LAYOUT;
  if (vault_account->data_len != sizeof(VaultV2)) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  VaultV2 *vault = (VaultV2 *)vault_account->data;
  if (!owner->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!SolPubkey_same(owner->key, &vault->owner)) return E_CONSTRAINT_HAS_ONE;
  if (!SolPubkey_same(params->ka[2].key, &vault->config)) return E_CONSTRAINT_HAS_ONE;
  Config *config;
  err = load_config(&params->ka[2], params->program_id, false, &config);
  if (err) return err;
  if (config->paused) return E_PAUSED;
  uint64_t balance, count;
  if (!sol_add_u64(vault->balance, sol_read_u64(params->data + 8), &balance) ||
      !sol_add_u64(vault->deposits_count, 1, &count)) {
    return E_OVERFLOW;
  }
  vault->balance = balance;
  vault->deposits_count = count;
  return SUCCESS;
}

/* Make the vault rent-exempt at `size` bytes, from the payer if it is short. */
static __attribute__((noinline)) uint64_t top_up_rent(SolParameters *params, uint64_t size) {
  SolAccountInfo *vault = &params->ka[0];
  SolRent rent;
  uint64_t minimum;
  if (sol_get_rent_sysvar(&rent) != SUCCESS || !sol_rent_minimum_balance(&rent, size, &minimum)) {
    return ERROR_UNSUPPORTED_SYSVAR;
  }
  if (*vault->lamports >= minimum) return SUCCESS;
  if (params->ka_num < 3) return E_RENT_TOP_UP_REQUIRED;
  SolAccountInfo *payer = &params->ka[1];
  SolAccountInfo *system_program = &params->ka[2];
  static const SolPubkey system_program_id = SYSTEM_PROGRAM_ID;
  if (!payer->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(system_program->key, &system_program_id)) return ERROR_INCORRECT_PROGRAM_ID;
  return sol_system_transfer(payer, vault, system_program, minimum - *vault->lamports, NULL, 0);
}

static __attribute__((noinline)) uint64_t migrate(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 1) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *vault_account = &params->ka[0];
  uint8_t version;
  uint64_t err = load_vault(vault_account, params->program_id, &version);
  if (err) return err;
  if (version == LAYOUT_VERSION) {
    sol_log("already on layout v2");
    return SUCCESS;
  }
  if (version != 1) return E_UNSUPPORTED_LAYOUT;
  if (vault_account->data_len != sizeof(VaultV1)) return E_ACCOUNT_DID_NOT_DESERIALIZE;

  /* The transfer happens before the resize, so the runtime sees the old length in it. */
  err = top_up_rent(params, sizeof(VaultV2));
  if (err) return err;
  uint64_t slot;
  err = current_slot(&slot);
  if (err) return err;

  /* The layouts overlap: read every v1 field before writing v2. */
  const VaultV1 *old = (const VaultV1 *)vault_account->data;
  SolPubkey owner = old->owner;
  SolPubkey config = old->config;
  uint64_t balance = old->balance;

  sol_account_resize(vault_account, sizeof(VaultV2));
  VaultV2 *vault = (VaultV2 *)vault_account->data;
  sol_memset(vault, 0, sizeof(VaultV2));
  vault->discriminator = ACCOUNT_VAULT;
  vault->version = LAYOUT_VERSION;
  vault->balance = balance;
  vault->deposits_count = 0;
  vault->migrated_slot = slot;
  vault->owner = owner;
  vault->config = config;
  sol_log("migrated to layout v2");
  return SUCCESS;
}

uint64_t entrypoint(const uint8_t *input) {
  sol_log("demo_vault v2");
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
    case IX_MIGRATE:
      return migrate(&params);
    default:
      return E_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
