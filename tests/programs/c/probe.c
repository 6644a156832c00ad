/*
 * A test program for the linker and solana_sdk.h. The first instruction data byte picks
 * a probe; each logs what the Python test checks.
 */
#include <solana_sdk.h>

uint64_t probe_sum(uint64_t a, uint64_t b); /* defined in probe_util.c */

/* Pointers in read-only data: R_BPF_64_ABS64 relocations the linker must store << 32. */
static const char *const NAMES[] = {"first", "second", "third"};
static const SolSignerSeed SEEDS[] = {{(const uint8_t *)"vault", 5}, {(const uint8_t *)"probe", 5}};

static __attribute__((noinline)) uint64_t fib(uint64_t n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static uint64_t probe_pda(const SolParameters *params) {
  SolPubkey found;
  uint8_t bump;
  if (sol_try_find_program_address(SEEDS, SOL_ARRAY_SIZE(SEEDS), params->program_id, &found,
                                   &bump) != SUCCESS) {
    return ERROR_INVALID_SEEDS;
  }
  SolSignerSeed with_bump[3] = {SEEDS[0], SEEDS[1], {&bump, 1}};
  SolPubkey created;
  if (sol_create_program_address(with_bump, 3, params->program_id, &created) != SUCCESS) {
    return ERROR_INVALID_SEEDS;
  }
  if (!SolPubkey_same(&found, &created)) return ERROR_INVALID_SEEDS;
  sol_log_pubkey(&found);
  sol_log_64_(bump, 0, 0, 0, 0);
  return SUCCESS;
}

static uint64_t probe_instructions(const SolParameters *params) {
  static const SolPubkey sysvar_id = SYSVAR_INSTRUCTIONS_ID;
  if (params->ka_num < 1 || !SolPubkey_same(params->ka[0].key, &sysvar_id)) {
    return ERROR_INVALID_ARGUMENT;
  }
  const uint8_t *data = params->ka[0].data;
  uint64_t len = params->ka[0].data_len;
  uint16_t count, current;
  SolIxView first;
  if (!sol_ix_sysvar_count(data, len, &count) || !sol_ix_sysvar_current_index(data, len, &current) ||
      !sol_ix_sysvar_load(data, len, 0, &first)) {
    return ERROR_INVALID_ACCOUNT_DATA;
  }
  uint8_t flags = 0;
  const SolPubkey *first_key = sol_ix_view_account(&first, 0, &flags);
  sol_log_64_(count, current, first.num_accounts, first.data_len, flags);
  sol_log_pubkey(first.program_id);
  if (first_key) sol_log_pubkey(first_key);
  return SUCCESS;
}

uint64_t entrypoint(const uint8_t *input) {
  SolAccountInfo accounts[3];
  SolParameters params = {.ka = accounts, .ka_num = SOL_ARRAY_SIZE(accounts)};
  if (!sol_deserialize(input, &params)) return ERROR_INVALID_ARGUMENT;
  if (params.data_len < 1) return ERROR_INVALID_INSTRUCTION_DATA;
  const uint8_t *data = params.data;
  switch (data[0]) {
    case 0:
      sol_log("hello from probe");
      return SUCCESS;
    case 1:
      if (params.data_len < 2 || data[1] >= SOL_ARRAY_SIZE(NAMES)) {
        return ERROR_INVALID_INSTRUCTION_DATA;
      }
      {
        const char *name = NAMES[data[1]];
        uint64_t n = 0;
        while (name[n]) n++;
        sol_log_(name, n);
      }
      return SUCCESS;
    case 2:
      return probe_pda(&params);
    case 3:
      sol_log_64_(fib(data[1]), probe_sum(40, 2), params.ka_total, params.ka_num, params.data_len);
      return SUCCESS;
    case 4:
      return probe_instructions(&params);
    case 5: {
      SolClock clock;
      if (sol_get_clock_sysvar(&clock) != SUCCESS) return ERROR_UNSUPPORTED_SYSVAR;
      SolRent rent;
      uint64_t minimum = 0;
      if (sol_get_rent_sysvar(&rent) != SUCCESS || !sol_rent_minimum_balance(&rent, 100, &minimum)) {
        return ERROR_UNSUPPORTED_SYSVAR;
      }
      sol_log_64_(clock.slot, (uint64_t)clock.unix_timestamp, minimum, 0, 0);
      return SUCCESS;
    }
    case 6:
      return params.data_len >= 5 ? sol_read_u32(data + 1) : ERROR_INVALID_INSTRUCTION_DATA;
    case 7: {
      /* CPI signed by a PDA: transfer u64 lamports out of PDA(SEEDS + bump). */
      if (params.ka_num < 3) return ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
      if (params.data_len < 10) return ERROR_INVALID_INSTRUCTION_DATA;
      uint8_t bump = data[1];
      SolSignerSeed seeds[3] = {SEEDS[0], SEEDS[1], {&bump, 1}};
      SolSignerSeeds signer = {seeds, 3};
      return sol_system_transfer(&params.ka[0], &params.ka[1], &params.ka[2], sol_read_u64(data + 2),
                                 &signer, 1);
    }
    default:
      return ERROR_INVALID_INSTRUCTION_DATA;
  }
}
