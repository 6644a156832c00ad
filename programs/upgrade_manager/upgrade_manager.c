/*
 * upgrade_manager: holds the upgrade authority of managed programs as a PDA and lets it
 * sign an upgrade only after M-of-N members approved it and a timelock ran out.
 * Build name "upgrade_manager"; client in programs/upgrade_manager/client.py, Anchor IDL
 * in programs/upgrade_manager/idl.json, layouts in upgrade_manager.h.
 *
 * Instructions (data = sha256("global:<name>")[:8] + borsh fields; w writable, s signer):
 *
 *   create_governance(genesis_hash [u8; 32], threshold u8, timelock u64,
 *                     emergency_threshold u8, emergency_timelock u64, proposer Pubkey,
 *                     members Vec<Pubkey>)
 *       governance(w), create_key(s), payer(w, s), system_program
 *   propose_upgrade(buffer_hash [u8; 32], emergency bool)
 *       governance(w), proposal(w), program, programdata, buffer, spill,
 *       proposer(w, s), system_program
 *   propose_set_authority()
 *       governance(w), proposal(w), program, programdata, new_authority, proposer(w, s),
 *       system_program
 *   propose_config(threshold u8, timelock u64, emergency_threshold u8,
 *                  emergency_timelock u64, proposer Pubkey, members Vec<Pubkey>)
 *       governance(w), proposal(w), proposer(w, s), system_program
 *   approve() / reject() / cancel()           relayed: the instruction right before is an
 *       governance, proposal(w), instructions   Ed25519SigVerify of a member's signature
 *                                                over this proposal's message for the action
 *   approve_signed() / reject_signed()        governance, proposal(w), member(s)
 *   cancel_signed()                           governance, proposal(w), member or proposer(s)
 *   execute_upgrade()
 *       governance, proposal(w), authority, programdata(w), program(w), buffer(w),
 *       spill(w), rent, clock, bpf_loader_upgradeable
 *   execute_set_authority()
 *       governance, proposal(w), authority, program, programdata(w), new_authority,
 *       bpf_loader_upgradeable
 *   execute_config()                          governance(w), proposal(w)
 *   adopt_program()
 *       governance, program, programdata(w), current_authority(s), authority,
 *       bpf_loader_upgradeable
 *
 * Rules:
 * - Only a member or the governance's proposer (if it has one) creates proposals, so
 *   nobody else can take the next proposal number from the operator.
 * - An upgrade's spill (where the buffer's lamports go) is fixed at proposal time and
 *   execute_upgrade refuses any other: whoever executes gains nothing.
 * - Emergency threshold >= threshold, and every member key an ed25519 point of large
 *   order (not the identity or another small-order point), at creation and config change.
 * - adopt_program hands a program to this governance with the loader's SetAuthorityChecked,
 *   the authority PDA signing as the new authority: a program can only be handed to a
 *   real governance of this program (a mistyped address cannot strand it).
 * - The governance keeps the genesis hash of its cluster (given at creation: a program
 *   cannot read it) and every proposal copies it; the signed line names it, so a
 *   sign-off given on one cluster never counts on another.
 * - Votes (approve, reject) count while a proposal is active or approved; the threshold
 *   and timelock are the emergency ones for emergency upgrades. The timelock runs from
 *   the moment the threshold is met (approved_at, Clock unix_timestamp).
 * - A proposal is rejected once rejections leave too few members to reach the threshold.
 * - Any one member (relayed or signing) or the proposer may cancel a proposal that has not
 *   executed: the timelock exists so that one member who spots a bad upgrade can stop it.
 * - A config change bumps config_version; proposals made under an older config (member
 *   indices in their bitmaps no longer mean the same people) can only be cancelled.
 * - propose_upgrade needs the buffer's authority to be the governance's authority PDA
 *   already (nobody can rewrite it after that) and its SHA-256 to equal the proposed
 *   hash; execute_upgrade checks both again, because a consumed buffer's address can be
 *   re-created with other bytes by whoever holds its keypair.
 *
 * The relayed check: the program reads the Instructions sysvar (its address checked),
 * takes the instruction just before its own, requires the Ed25519SigVerify program id,
 * exactly one signature, and the instruction index of all three offsets (signature,
 * public key, message) equal to 0xFFFF, which the precompile defines as "this precompile
 * instruction". Offsets that name another instruction are refused even when they name
 * the precompile's own index: accepting one spelling only leaves nothing to get wrong,
 * and 0xFFFF is what the standard builders (solana-sdk, web3.js) write. The public key
 * must be a member who has not voted, and the message bytes must be the text this
 * program rebuilds from on-chain state in one of the two off-chain envelopes members'
 * tools sign: the standard v0 (one signer, the member; application domain zero or the
 * governance address; format 0) or the legacy header (message.c).
 */
#include "upgrade_manager.h"

/* The heap (32 KiB, zeroed per instruction) holds what would overflow a 512-byte frame. */
#define MAX_ACCOUNTS 12
#define HEAP_ACCOUNTS ((SolAccountInfo *)SOL_HEAP_START)
#define HEAP_MESSAGE (SOL_HEAP_START + 1024)
#define MESSAGE_CAP 2048
_Static_assert(MESSAGE_CAP >= MAX_TEXT, "room for the approval text");

#define ED25519_OFFSETS_START 2
#define ED25519_OFFSETS_SIZE 14
#define ED25519_THIS_INSTRUCTION 0xFFFF

#define LOADER_TAG_BUFFER 1
#define LOADER_TAG_PROGRAM 2
#define LOADER_TAG_PROGRAMDATA 3
#define BUFFER_METADATA_SIZE 37
#define PROGRAMDATA_METADATA_SIZE 45
#define LOADER_IX_UPGRADE 3
#define LOADER_IX_SET_AUTHORITY 4
#define LOADER_IX_SET_AUTHORITY_CHECKED 7
#define CURVE25519_EDWARDS 0
#define CURVE_OP_MUL 2

/* Curve syscalls (SIMD-0033 curve25519): 0 when the point decodes / the op succeeded. */
uint64_t sol_curve_validate_point(uint64_t curve_id, const uint8_t *point, uint8_t *result);
uint64_t sol_curve_group_op(uint64_t curve_id, uint64_t group_op, const uint8_t *left,
                            const uint8_t *right, uint8_t *result);

static const SolPubkey LOADER_ID = BPF_LOADER_UPGRADEABLE_ID;
static const SolPubkey SYSTEM_ID = SYSTEM_PROGRAM_ID;
static const SolPubkey INSTRUCTIONS_ID = SYSVAR_INSTRUCTIONS_ID;
static const SolPubkey ED25519_ID = ED25519_PROGRAM_ID;

/* ------------------------------------------------------------------ helpers */

static uint32_t popcount(uint32_t bits) {
  uint32_t n = 0;
  for (; bits; bits &= bits - 1) n++;
  return n;
}

static uint64_t now(int64_t *out) {
  SolClock clock;
  if (sol_get_clock_sysvar(&clock) != SUCCESS) return ERROR_UNSUPPORTED_SYSVAR;
  *out = clock.unix_timestamp;
  return SUCCESS;
}

static uint64_t load_governance(const SolAccountInfo *account, const SolPubkey *program_id,
                                bool writable, Governance **out) {
  if (writable && !account->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(account->owner, program_id)) return E_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  if (account->data_len != sizeof(Governance)) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (*(const uint64_t *)account->data != ACCOUNT_GOVERNANCE) {
    return E_ACCOUNT_DISCRIMINATOR_MISMATCH;
  }
  *out = (Governance *)account->data;
  return SUCCESS;
}

/* A writable proposal of `governance` (the account key, which signatures name). */
static uint64_t load_proposal(const SolAccountInfo *account, const SolPubkey *program_id,
                              const SolPubkey *governance, Proposal **out) {
  if (!account->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(account->owner, program_id)) return E_ACCOUNT_OWNED_BY_WRONG_PROGRAM;
  if (account->data_len != sizeof(Proposal)) return E_ACCOUNT_DID_NOT_DESERIALIZE;
  if (*(const uint64_t *)account->data != ACCOUNT_PROPOSAL) {
    return E_ACCOUNT_DISCRIMINATOR_MISMATCH;
  }
  Proposal *proposal = (Proposal *)account->data;
  if (!SolPubkey_same(&proposal->governance, governance)) return E_GOVERNANCE_MISMATCH;
  *out = proposal;
  return SUCCESS;
}

static int member_index(const Governance *g, const SolPubkey *key) {
  for (int i = 0; i < g->member_count && i < MAX_MEMBERS; i++) {
    if (SolPubkey_same(&g->members[i], key)) return i;
  }
  return -1;
}

static uint8_t threshold_for(const Governance *g, const Proposal *p) {
  return p->kind == KIND_EMERGENCY_UPGRADE ? g->emergency_threshold : g->threshold;
}

static uint64_t timelock_for(const Governance *g, const Proposal *p) {
  return p->kind == KIND_EMERGENCY_UPGRADE ? g->emergency_timelock : g->timelock;
}

/* Closed proposals refuse everything with an error naming why they are closed. */
static uint64_t check_open(const Proposal *p) {
  switch (p->status) {
    case STATUS_ACTIVE:
    case STATUS_APPROVED:
      return SUCCESS;
    case STATUS_EXECUTED:
      return E_PROPOSAL_EXECUTED;
    case STATUS_CANCELLED:
      return E_PROPOSAL_CANCELLED;
    default:
      return E_PROPOSAL_REJECTED;
  }
}

static uint64_t check_current(const Governance *g, const Proposal *p) {
  uint64_t err = check_open(p);
  if (err) return err;
  if (p->config_version != g->config_version) return E_STALE_PROPOSAL;
  return SUCCESS;
}

/* Members, thresholds, timelocks and the proposer a governance may have. */
typedef struct {
  uint8_t threshold;
  uint8_t emergency_threshold;
  uint64_t timelock;
  uint64_t emergency_timelock;
  const uint8_t *members; /* count keys of 32 bytes */
  uint64_t count;
  const uint8_t *proposer; /* 32 bytes; all zero: members only */
} ConfigArgs;

/* A key on the curve whose [8]P is not the identity: not one of the eight small-order
 * points, which nobody (or everybody) can sign for. */
static bool large_order_point(const uint8_t *key) {
  uint8_t unused[32];
  if (sol_curve_validate_point(CURVE25519_EDWARDS, key, unused) != 0) return false;
  uint8_t cofactor[32] = {8};
  uint8_t multiple[32];
  if (sol_curve_group_op(CURVE25519_EDWARDS, CURVE_OP_MUL, cofactor, key, multiple) != 0) {
    return false;
  }
  uint8_t identity[32] = {1};
  return sol_memcmp(multiple, identity, 32) != 0;
}

static uint64_t check_config(const ConfigArgs *c) {
  if (c->count == 0 || c->count > MAX_MEMBERS) return E_INVALID_CONFIG;
  if (c->threshold == 0 || c->threshold > c->count) return E_INVALID_CONFIG;
  if (c->emergency_threshold == 0 || c->emergency_threshold > c->count) return E_INVALID_CONFIG;
  /* An emergency path needing fewer members would bypass the normal threshold. */
  if (c->emergency_threshold < c->threshold) return E_EMERGENCY_THRESHOLD_BELOW_THRESHOLD;
  if (c->timelock > MAX_TIMELOCK_SECONDS || c->emergency_timelock > MAX_TIMELOCK_SECONDS) {
    return E_INVALID_CONFIG;
  }
  for (uint64_t i = 0; i < c->count; i++) {
    for (uint64_t j = i + 1; j < c->count; j++) {
      if (sol_memcmp(c->members + 32 * i, c->members + 32 * j, 32) == 0) return E_INVALID_CONFIG;
    }
  }
  for (uint64_t i = 0; i < c->count; i++) {
    if (!large_order_point(c->members + 32 * i)) return E_INVALID_MEMBER_KEY;
  }
  return SUCCESS;
}

/* Config arguments at `at` in the instruction data: threshold u8, timelock u64,
 * emergency_threshold u8, emergency_timelock u64, proposer Pubkey, members Vec<Pubkey>
 * (u32 count + keys), the last field. */

static uint64_t parse_config(const SolParameters *params, uint64_t at, ConfigArgs *out) {
  const uint8_t *d = params->data + at;
  uint64_t fixed = at + 1 + 8 + 1 + 8 + 32 + 4;
  if (params->data_len < fixed) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  out->threshold = d[0];
  out->timelock = sol_read_u64(d + 1);
  out->emergency_threshold = d[9];
  out->emergency_timelock = sol_read_u64(d + 10);
  out->proposer = d + 18;
  out->count = sol_read_u32(d + 50);
  out->members = d + 54;
  if (out->count > MAX_MEMBERS || params->data_len != fixed + 32 * out->count) {
    return out->count > MAX_MEMBERS ? E_INVALID_CONFIG : E_INSTRUCTION_DID_NOT_DESERIALIZE;
  }
  return check_config(out);
}

/* Create (or, if someone pre-funded the address, allocate and assign) a program-owned
 * PDA of `space` bytes, rent-exempt, paid by `payer`. Pre-funding must not be able to
 * block the next proposal address, which anyone can compute. */
typedef struct {
  SolAccountInfo *payer;
  SolAccountInfo *target;
  SolAccountInfo *system;
  const SolPubkey *owner;
} Creation;

static uint64_t create_pda(const Creation *c, uint64_t space, const SolSignerSeeds *seeds) {
  SolAccountInfo *payer = c->payer, *target = c->target, *system = c->system;
  const SolPubkey *owner = c->owner;
  if (!SolPubkey_same(system->key, &SYSTEM_ID)) return ERROR_INCORRECT_PROGRAM_ID;
  if (!payer->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!payer->is_writable || !target->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(target->owner, &SYSTEM_ID) || target->data_len != 0) {
    return E_ACCOUNT_DISCRIMINATOR_ALREADY_SET;
  }
  SolRent rent;
  uint64_t minimum;
  if (sol_get_rent_sysvar(&rent) != SUCCESS || !sol_rent_minimum_balance(&rent, space, &minimum)) {
    return ERROR_UNSUPPORTED_SYSVAR;
  }
  SolAccountInfo infos[3] = {*payer, *target, *system};
  uint64_t err;
  if (*target->lamports == 0) {
    uint8_t data[52];
    data[0] = 0; /* SystemInstruction::CreateAccount */
    data[1] = data[2] = data[3] = 0;
    sol_write_u64(data + 4, minimum);
    sol_write_u64(data + 12, space);
    sol_memcpy(data + 20, owner, 32);
    SolAccountMeta metas[2] = {{payer->key, true, true}, {target->key, true, true}};
    SolInstruction ix = {system->key, metas, 2, data, sizeof(data)};
    err = sol_invoke_signed_c(&ix, infos, 3, seeds, 1);
    if (err) return err;
  } else {
    if (*target->lamports < minimum) {
      err = sol_system_transfer(payer, target, system, minimum - *target->lamports, NULL, 0);
      if (err) return err;
    }
    uint8_t allocate[12] = {8, 0, 0, 0}; /* SystemInstruction::Allocate{space} */
    sol_write_u64(allocate + 4, space);
    SolAccountMeta meta = {target->key, true, true};
    SolInstruction ix = {system->key, &meta, 1, allocate, sizeof(allocate)};
    err = sol_invoke_signed_c(&ix, infos + 1, 2, seeds, 1);
    if (err) return err;
    uint8_t assign[36] = {1, 0, 0, 0}; /* SystemInstruction::Assign{owner} */
    sol_memcpy(assign + 4, owner, 32);
    ix.data = assign;
    ix.data_len = sizeof(assign);
    err = sol_invoke_signed_c(&ix, infos + 1, 2, seeds, 1);
    if (err) return err;
  }
  /* The runtime wrote the new length into the serialized account, not into our copy. */
  target->data_len = *(const uint64_t *)(target->data - sizeof(uint64_t));
  return target->data_len == space ? SUCCESS : E_ACCOUNT_DID_NOT_DESERIALIZE;
}

/* ---------------------------------------------------------- loader accounts */

/* A loader Program account whose ProgramData is `programdata` and whose upgrade authority
 * is the governance's PDA. */
static uint64_t check_managed(const Governance *g, const SolAccountInfo *program,
                              const SolAccountInfo *programdata) {
  if (!SolPubkey_same(program->owner, &LOADER_ID) || program->data_len < 36 ||
      sol_read_u32(program->data) != LOADER_TAG_PROGRAM ||
      sol_memcmp(program->data + 4, programdata->key, 32) != 0) {
    return E_INVALID_PROGRAM;
  }
  if (!SolPubkey_same(programdata->owner, &LOADER_ID) ||
      programdata->data_len < PROGRAMDATA_METADATA_SIZE ||
      sol_read_u32(programdata->data) != LOADER_TAG_PROGRAMDATA) {
    return E_INVALID_PROGRAM;
  }
  if (programdata->data[12] != 1 || sol_memcmp(programdata->data + 13, &g->authority, 32) != 0) {
    return E_PROGRAM_NOT_MANAGED;
  }
  return SUCCESS;
}

/* SHA-256 of a buffer's program bytes without trailing zeros (solana-verify's hash). */
static void buffer_sha256(const SolAccountInfo *buffer, uint8_t hash[32]) {
  const uint8_t *bytes = buffer->data + BUFFER_METADATA_SIZE;
  uint64_t len = buffer->data_len - BUFFER_METADATA_SIZE;
  /* A buffer sized larger than its program ends in many zeros: skip them a word at a
   * time once the end is 8-byte aligned. */
  while (len && ((uint64_t)(bytes + len) & 7) && bytes[len - 1] == 0) len--;
  while (len >= 8 && !((uint64_t)(bytes + len) & 7) &&
         *(const uint64_t *)(bytes + len - 8) == 0) {
    len -= 8;
  }
  while (len && bytes[len - 1] == 0) len--;
  SolBytes slice = {bytes, len};
  sol_sha256(&slice, 1, hash);
}

/* A loader Buffer whose authority is the governance's PDA and whose bytes hash to `hash`. */
static uint64_t check_buffer(const Governance *g, const SolAccountInfo *buffer,
                             const uint8_t hash[32]) {
  if (!SolPubkey_same(buffer->owner, &LOADER_ID) || buffer->data_len < BUFFER_METADATA_SIZE ||
      sol_read_u32(buffer->data) != LOADER_TAG_BUFFER) {
    return E_INVALID_BUFFER;
  }
  if (buffer->data[4] != 1 || sol_memcmp(buffer->data + 5, &g->authority, 32) != 0) {
    return E_BUFFER_AUTHORITY_MISMATCH;
  }
  uint8_t actual[32];
  buffer_sha256(buffer, actual);
  if (sol_memcmp(actual, hash, 32) != 0) return E_HASH_MISMATCH;
  return SUCCESS;
}

/* -------------------------------------------------------------- governance */

static __attribute__((noinline)) uint64_t create_governance(SolParameters *params) {
  if (params->ka_num < 4) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  ConfigArgs config;
  uint64_t err = parse_config(params, 8 + 32, &config);
  if (err) return err;
  SolAccountInfo *governance = &params->ka[0];
  SolAccountInfo *create_key = &params->ka[1];
  if (!create_key->is_signer) return E_ACCOUNT_NOT_SIGNER;

  SolSignerSeed seeds[3] = {{(const uint8_t *)"governance", 10},
                            {create_key->key->x, 32},
                            {NULL, 1}};
  SolPubkey address;
  uint8_t bump;
  if (sol_try_find_program_address(seeds, 2, params->program_id, &address, &bump) != SUCCESS ||
      !SolPubkey_same(&address, governance->key)) {
    return E_INVALID_PDA;
  }
  seeds[2].addr = &bump;
  SolSignerSeeds signer = {seeds, 3};
  Creation creation = {&params->ka[2], governance, &params->ka[3], params->program_id};
  err = create_pda(&creation, sizeof(Governance), &signer);
  if (err) return err;

  Governance *g = (Governance *)governance->data;
  SolSignerSeed authority_seeds[2] = {{(const uint8_t *)"authority", 9},
                                      {governance->key->x, 32}};
  if (sol_try_find_program_address(authority_seeds, 2, params->program_id, &g->authority,
                                   &g->authority_bump) != SUCCESS) {
    return E_INVALID_PDA;
  }
  g->discriminator = ACCOUNT_GOVERNANCE;
  g->create_key = *create_key->key;
  g->bump = bump;
  g->threshold = config.threshold;
  g->timelock = config.timelock;
  g->emergency_threshold = config.emergency_threshold;
  g->emergency_timelock = config.emergency_timelock;
  g->member_count = (uint8_t)config.count;
  sol_memcpy(g->members, config.members, 32 * config.count);
  sol_memcpy(g->genesis_hash, params->data + 8, 32);
  sol_memcpy(&g->proposer, config.proposer, 32);
  return SUCCESS;
}

/* ---------------------------------------------------------------- proposals */

/* Create proposal number proposal_count + 1 of governance ka[0] in ka[1], paid by
 * ka[payer_at] (the system program follows it). */
static uint64_t new_proposal(SolParameters *params, Governance *g, uint64_t payer_at,
                             uint8_t kind, Proposal **out) {
  SolAccountInfo *governance = &params->ka[0];
  SolAccountInfo *proposal = &params->ka[1];
  SolAccountInfo *payer = &params->ka[payer_at];
  if (!payer->is_signer) return E_ACCOUNT_NOT_SIGNER;
  /* Anyone else could take the next number and make the operator's propose fail. */
  static const SolPubkey NOBODY = {{0}};
  bool proposer = !SolPubkey_same(&g->proposer, &NOBODY) && SolPubkey_same(&g->proposer, payer->key);
  if (!proposer && member_index(g, payer->key) < 0) return E_NOT_ALLOWED_TO_PROPOSE;
  uint64_t index;
  if (!sol_add_u64(g->proposal_count, 1, &index)) return E_OVERFLOW;
  uint8_t index_le[8];
  sol_write_u64(index_le, index);
  SolSignerSeed seeds[4] = {{(const uint8_t *)"proposal", 8},
                            {governance->key->x, 32},
                            {index_le, 8},
                            {NULL, 1}};
  SolPubkey address;
  uint8_t bump;
  if (sol_try_find_program_address(seeds, 3, params->program_id, &address, &bump) != SUCCESS ||
      !SolPubkey_same(&address, proposal->key)) {
    return E_INVALID_PDA;
  }
  seeds[3].addr = &bump;
  SolSignerSeeds signer = {seeds, 4};
  Creation creation = {payer, proposal, &params->ka[payer_at + 1], params->program_id};
  uint64_t err = create_pda(&creation, sizeof(Proposal), &signer);
  if (err) return err;
  int64_t created_at;
  err = now(&created_at);
  if (err) return err;
  Proposal *p = (Proposal *)proposal->data;
  p->discriminator = ACCOUNT_PROPOSAL;
  p->governance = *governance->key;
  p->index = index;
  p->proposer = *payer->key;
  p->kind = kind;
  p->status = STATUS_ACTIVE;
  p->bump = bump;
  p->config_version = g->config_version;
  p->created_at = created_at;
  sol_memcpy(p->genesis_hash, g->genesis_hash, 32);
  g->proposal_count = index;
  *out = p;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t propose_upgrade(SolParameters *params) {
  if (params->data_len != 8 + 32 + 1) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 8) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  uint8_t emergency = params->data[40];
  if (emergency > 1) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  Governance *g;
  uint64_t err = load_governance(&params->ka[0], params->program_id, true, &g);
  if (err) return err;
  SolAccountInfo *program = &params->ka[2];
  SolAccountInfo *buffer = &params->ka[4];
  err = check_managed(g, program, &params->ka[3]);
  if (err) return err;
  err = check_buffer(g, buffer, params->data + 8);
  if (err) return err;
  Proposal *p;
  err = new_proposal(params, g, 6, emergency ? KIND_EMERGENCY_UPGRADE : KIND_UPGRADE, &p);
  if (err) return err;
  p->program = *program->key;
  p->buffer = *buffer->key;
  p->spill = *params->ka[5].key;
  sol_memcpy(p->buffer_hash, params->data + 8, 32);
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t propose_set_authority(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 7) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  Governance *g;
  uint64_t err = load_governance(&params->ka[0], params->program_id, true, &g);
  if (err) return err;
  SolAccountInfo *program = &params->ka[2];
  err = check_managed(g, program, &params->ka[3]);
  if (err) return err;
  Proposal *p;
  err = new_proposal(params, g, 5, KIND_SET_AUTHORITY, &p);
  if (err) return err;
  p->program = *program->key;
  p->new_authority = *params->ka[4].key;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t propose_config(SolParameters *params) {
  if (params->ka_num < 4) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  ConfigArgs config;
  uint64_t err = parse_config(params, 8, &config);
  if (err) return err;
  Governance *g;
  err = load_governance(&params->ka[0], params->program_id, true, &g);
  if (err) return err;
  Proposal *p;
  err = new_proposal(params, g, 2, KIND_CONFIG, &p);
  if (err) return err;
  p->new_threshold = config.threshold;
  p->new_timelock = config.timelock;
  p->new_emergency_threshold = config.emergency_threshold;
  p->new_emergency_timelock = config.emergency_timelock;
  p->new_member_count = (uint8_t)config.count;
  sol_memcpy(p->new_members, config.members, 32 * config.count);
  sol_memcpy(&p->new_proposer, config.proposer, 32);
  return SUCCESS;
}

/* ----------------------------------------------------------------- sign-off */

/*
 * The member whose signature the Ed25519SigVerify instruction just before this one
 * verified over exactly the message for `action` on `p`; see the file comment.
 */
static uint64_t relayed_member(const SolParameters *params, const Governance *g,
                               const Proposal *p, uint8_t action, int *member) {
  const SolPubkey *governance_key = params->ka[0].key;
  const SolAccountInfo *sysvar = &params->ka[2];
  if (!SolPubkey_same(sysvar->key, &INSTRUCTIONS_ID)) return E_INVALID_INSTRUCTIONS_SYSVAR;
  uint16_t current;
  if (!sol_ix_sysvar_current_index(sysvar->data, sysvar->data_len, &current) || current == 0) {
    return E_MISSING_SIGNATURE_VERIFICATION;
  }
  SolIxView ix;
  if (!sol_ix_sysvar_load(sysvar->data, sysvar->data_len, current - 1, &ix) ||
      !SolPubkey_same(ix.program_id, &ED25519_ID)) {
    return E_MISSING_SIGNATURE_VERIFICATION;
  }
  const uint8_t *d = ix.data;
  if (ix.data_len < ED25519_OFFSETS_START + ED25519_OFFSETS_SIZE || d[0] != 1) {
    return E_INVALID_SIGNATURE_INSTRUCTION;
  }
  const uint8_t *o = d + ED25519_OFFSETS_START;
  uint16_t signature_offset = sol_read_u16(o);
  uint16_t signature_ix = sol_read_u16(o + 2);
  uint16_t pubkey_offset = sol_read_u16(o + 4);
  uint16_t pubkey_ix = sol_read_u16(o + 6);
  uint16_t message_offset = sol_read_u16(o + 8);
  uint16_t message_size = sol_read_u16(o + 10);
  uint16_t message_ix = sol_read_u16(o + 12);
  /* The classic introspection bug: the precompile verifies bytes wherever the offsets
   * point, while a program reading this instruction's data sees other bytes. */
  if (signature_ix != ED25519_THIS_INSTRUCTION || pubkey_ix != ED25519_THIS_INSTRUCTION ||
      message_ix != ED25519_THIS_INSTRUCTION) {
    return E_FOREIGN_SIGNATURE_OFFSETS;
  }
  if ((uint64_t)signature_offset + 64 > ix.data_len || (uint64_t)pubkey_offset + 32 > ix.data_len ||
      (uint64_t)message_offset + message_size > ix.data_len) {
    return E_INVALID_SIGNATURE_INSTRUCTION;
  }
  int index = member_index(g, (const SolPubkey *)(d + pubkey_offset));
  if (index < 0) return E_NOT_A_MEMBER;
  if (action != ACTION_CANCEL && ((p->approvals | p->rejections) >> index) & 1) {
    return E_ALREADY_VOTED;
  }
  SignedMessage signed_message = {(const SolPubkey *)(d + pubkey_offset), d + message_offset,
                                  message_size};
  uint64_t err = check_signed_message(governance_key, p, action, &signed_message, HEAP_MESSAGE);
  if (err) return err;
  *member = index;
  return SUCCESS;
}

static uint64_t signed_member(const Governance *g, const Proposal *p,
                              const SolAccountInfo *signer, int *member) {
  if (!signer->is_signer) return E_ACCOUNT_NOT_SIGNER;
  int index = member_index(g, signer->key);
  if (index < 0) return E_NOT_A_MEMBER;
  if (((p->approvals | p->rejections) >> index) & 1) return E_ALREADY_VOTED;
  *member = index;
  return SUCCESS;
}

/* approve / reject, relayed or signed: ka = governance, proposal, sysvar or member. */
static __attribute__((noinline)) uint64_t vote(SolParameters *params, uint8_t action,
                                               bool relayed) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 3) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  Governance *g;
  Proposal *p;
  uint64_t err = load_governance(&params->ka[0], params->program_id, false, &g);
  if (err) return err;
  err = load_proposal(&params->ka[1], params->program_id, params->ka[0].key, &p);
  if (err) return err;
  err = check_current(g, p);
  if (err) return err;
  int member;
  err = relayed ? relayed_member(params, g, p, action, &member)
                : signed_member(g, p, &params->ka[2], &member);
  if (err) return err;
  int64_t t;
  err = now(&t);
  if (err) return err;
  uint32_t threshold = threshold_for(g, p);
  if (action == ACTION_APPROVE) {
    p->approvals |= 1u << member;
    if (p->status == STATUS_ACTIVE && popcount(p->approvals) >= threshold) {
      p->status = STATUS_APPROVED;
      p->approved_at = t;
    }
  } else {
    p->rejections |= 1u << member;
    if (p->status == STATUS_ACTIVE && popcount(p->rejections) > g->member_count - threshold) {
      p->status = STATUS_REJECTED;
      p->closed_at = t;
    }
  }
  return SUCCESS;
}

/* cancel, relayed (a member's signed cancel message) or signed (a member or the proposer).
 * Stale proposals may be cancelled: that is how they get cleared. */
static __attribute__((noinline)) uint64_t cancel(SolParameters *params, bool relayed) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 3) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  Governance *g;
  Proposal *p;
  uint64_t err = load_governance(&params->ka[0], params->program_id, false, &g);
  if (err) return err;
  err = load_proposal(&params->ka[1], params->program_id, params->ka[0].key, &p);
  if (err) return err;
  err = check_open(p);
  if (err) return err;
  if (relayed) {
    int member;
    err = relayed_member(params, g, p, ACTION_CANCEL, &member);
    if (err) return err;
  } else {
    const SolAccountInfo *signer = &params->ka[2];
    if (!signer->is_signer) return E_ACCOUNT_NOT_SIGNER;
    if (!SolPubkey_same(signer->key, &p->proposer) && member_index(g, signer->key) < 0) {
      return E_NOT_PROPOSER_OR_MEMBER;
    }
  }
  err = now(&p->closed_at);
  if (err) return err;
  p->status = STATUS_CANCELLED;
  return SUCCESS;
}

/* ------------------------------------------------------------------ execute */

/* An approved, current proposal of `kind(s)` whose timelock has run out at *t. */
static uint64_t check_executable(const Governance *g, const Proposal *p, uint8_t kind_a,
                                 uint8_t kind_b, int64_t *t) {
  if (p->kind != kind_a && p->kind != kind_b) return E_WRONG_PROPOSAL_KIND;
  uint64_t err = check_current(g, p);
  if (err) return err;
  if (p->status != STATUS_APPROVED || popcount(p->approvals) < threshold_for(g, p)) {
    return E_THRESHOLD_NOT_MET;
  }
  err = now(t);
  if (err) return err;
  /* approved_at >= 0 on any real cluster and timelock <= 2^32: no overflow. */
  if (*t < p->approved_at || (uint64_t)(*t - p->approved_at) < timelock_for(g, p)) {
    return E_TIMELOCK_ACTIVE;
  }
  return SUCCESS;
}

static uint64_t invoke_loader(const Governance *g, const SolAccountInfo *governance,
                              SolInstruction *ix, const SolAccountInfo *infos, int n) {
  SolSignerSeed seeds[3] = {{(const uint8_t *)"authority", 9},
                            {governance->key->x, 32},
                            {&g->authority_bump, 1}};
  SolSignerSeeds signer = {seeds, 3};
  return sol_invoke_signed_c(ix, infos, n, &signer, 1);
}

static __attribute__((noinline)) uint64_t execute_upgrade(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 10) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *ka = params->ka;
  Governance *g;
  Proposal *p;
  uint64_t err = load_governance(&ka[0], params->program_id, false, &g);
  if (err) return err;
  err = load_proposal(&ka[1], params->program_id, ka[0].key, &p);
  if (err) return err;
  int64_t t;
  err = check_executable(g, p, KIND_UPGRADE, KIND_EMERGENCY_UPGRADE, &t);
  if (err) return err;
  SolAccountInfo *authority = &ka[2], *programdata = &ka[3], *program = &ka[4];
  SolAccountInfo *buffer = &ka[5], *spill = &ka[6], *loader = &ka[9];
  if (!SolPubkey_same(authority->key, &g->authority)) return E_INVALID_AUTHORITY;
  if (!SolPubkey_same(program->key, &p->program)) return E_PROGRAM_MISMATCH;
  if (!SolPubkey_same(buffer->key, &p->buffer)) return E_BUFFER_MISMATCH;
  if (!SolPubkey_same(spill->key, &p->spill)) return E_SPILL_MISMATCH;
  err = check_buffer(g, buffer, p->buffer_hash);
  if (err) return err;
  if (!SolPubkey_same(loader->key, &LOADER_ID)) return ERROR_INCORRECT_PROGRAM_ID;

  /* Upgrade: programdata(w), program(w), buffer(w), spill(w), rent, clock, authority(s). */
  uint8_t data[4] = {LOADER_IX_UPGRADE, 0, 0, 0};
  SolAccountMeta metas[7] = {
      {programdata->key, true, false}, {program->key, true, false}, {buffer->key, true, false},
      {spill->key, true, false},       {ka[7].key, false, false},   {ka[8].key, false, false},
      {authority->key, false, true},
  };
  SolInstruction ix = {loader->key, metas, 7, data, sizeof(data)};
  /* Accounts 2..9 are exactly the callee's accounts plus the loader itself. */
  err = invoke_loader(g, &ka[0], &ix, &ka[2], 8);
  if (err) return err;
  p->status = STATUS_EXECUTED;
  p->closed_at = t;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t execute_set_authority(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 7) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *ka = params->ka;
  Governance *g;
  Proposal *p;
  uint64_t err = load_governance(&ka[0], params->program_id, false, &g);
  if (err) return err;
  err = load_proposal(&ka[1], params->program_id, ka[0].key, &p);
  if (err) return err;
  int64_t t;
  err = check_executable(g, p, KIND_SET_AUTHORITY, KIND_SET_AUTHORITY, &t);
  if (err) return err;
  SolAccountInfo *authority = &ka[2], *program = &ka[3], *programdata = &ka[4];
  SolAccountInfo *new_authority = &ka[5], *loader = &ka[6];
  if (!SolPubkey_same(authority->key, &g->authority)) return E_INVALID_AUTHORITY;
  if (!SolPubkey_same(program->key, &p->program)) return E_PROGRAM_MISMATCH;
  err = check_managed(g, program, programdata);
  if (err) return err;
  if (!SolPubkey_same(new_authority->key, &p->new_authority)) return E_NEW_AUTHORITY_MISMATCH;
  if (!SolPubkey_same(loader->key, &LOADER_ID)) return ERROR_INCORRECT_PROGRAM_ID;

  /* SetAuthority: programdata(w), current authority(s), new authority. */
  uint8_t data[4] = {LOADER_IX_SET_AUTHORITY, 0, 0, 0};
  SolAccountMeta metas[3] = {
      {programdata->key, true, false}, {authority->key, false, true}, {new_authority->key, false, false}};
  SolInstruction ix = {loader->key, metas, 3, data, sizeof(data)};
  SolAccountInfo infos[4] = {*programdata, *authority, *new_authority, *loader};
  err = invoke_loader(g, &ka[0], &ix, infos, 4);
  if (err) return err;
  p->status = STATUS_EXECUTED;
  p->closed_at = t;
  return SUCCESS;
}

static __attribute__((noinline)) uint64_t execute_config(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 2) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  Governance *g;
  Proposal *p;
  uint64_t err = load_governance(&params->ka[0], params->program_id, true, &g);
  if (err) return err;
  err = load_proposal(&params->ka[1], params->program_id, params->ka[0].key, &p);
  if (err) return err;
  int64_t t;
  err = check_executable(g, p, KIND_CONFIG, KIND_CONFIG, &t);
  if (err) return err;
  ConfigArgs config = {p->new_threshold,      p->new_emergency_threshold,
                       p->new_timelock,       p->new_emergency_timelock,
                       p->new_members[0].x,   p->new_member_count,
                       p->new_proposer.x};
  err = check_config(&config);
  if (err) return err;
  uint32_t version;
  if (g->config_version == 0xffffffffu) return E_OVERFLOW;
  version = g->config_version + 1;
  g->threshold = p->new_threshold;
  g->timelock = p->new_timelock;
  g->emergency_threshold = p->new_emergency_threshold;
  g->emergency_timelock = p->new_emergency_timelock;
  g->member_count = p->new_member_count;
  sol_memset(g->members, 0, sizeof(g->members));
  sol_memcpy(g->members, p->new_members, 32 * (uint64_t)p->new_member_count);
  g->proposer = p->new_proposer;
  g->config_version = version;
  p->status = STATUS_EXECUTED;
  p->closed_at = t;
  return SUCCESS;
}

/* -------------------------------------------------------------------- adopt */

/* The current upgrade authority hands `program` to this governance: SetAuthorityChecked
 * with the authority PDA signing as the new authority (by its seeds). */
static __attribute__((noinline)) uint64_t adopt_program(SolParameters *params) {
  if (params->data_len != 8) return E_INSTRUCTION_DID_NOT_DESERIALIZE;
  if (params->ka_num < 6) return E_ACCOUNT_NOT_ENOUGH_KEYS;
  SolAccountInfo *ka = params->ka;
  Governance *g;
  uint64_t err = load_governance(&ka[0], params->program_id, false, &g);
  if (err) return err;
  SolAccountInfo *program = &ka[1], *programdata = &ka[2], *current = &ka[3];
  SolAccountInfo *authority = &ka[4], *loader = &ka[5];
  if (!SolPubkey_same(authority->key, &g->authority)) return E_INVALID_AUTHORITY;
  if (!current->is_signer) return E_ACCOUNT_NOT_SIGNER;
  if (!programdata->is_writable) return E_ACCOUNT_NOT_MUTABLE;
  if (!SolPubkey_same(program->owner, &LOADER_ID) || program->data_len < 36 ||
      sol_read_u32(program->data) != LOADER_TAG_PROGRAM ||
      sol_memcmp(program->data + 4, programdata->key, 32) != 0) {
    return E_INVALID_PROGRAM;
  }
  if (!SolPubkey_same(loader->key, &LOADER_ID)) return ERROR_INCORRECT_PROGRAM_ID;
  /* SetAuthorityChecked: programdata(w), current authority(s), new authority(s). */
  uint8_t data[4] = {LOADER_IX_SET_AUTHORITY_CHECKED, 0, 0, 0};
  SolAccountMeta metas[3] = {{programdata->key, true, false},
                             {current->key, false, true},
                             {authority->key, false, true}};
  SolInstruction ix = {loader->key, metas, 3, data, sizeof(data)};
  SolAccountInfo infos[4] = {*programdata, *current, *authority, *loader};
  return invoke_loader(g, &ka[0], &ix, infos, 4);
}

/* --------------------------------------------------------------- entrypoint */

uint64_t entrypoint(const uint8_t *input) {
  SolParameters params = {.ka = HEAP_ACCOUNTS, .ka_num = MAX_ACCOUNTS};
  if (!sol_deserialize(input, &params)) return ERROR_INVALID_ARGUMENT;
  if (params.data_len < 8) return E_INSTRUCTION_MISSING;
  switch (sol_read_u64(params.data)) {
    case IX_CREATE_GOVERNANCE:
      return create_governance(&params);
    case IX_PROPOSE_UPGRADE:
      return propose_upgrade(&params);
    case IX_PROPOSE_SET_AUTHORITY:
      return propose_set_authority(&params);
    case IX_PROPOSE_CONFIG:
      return propose_config(&params);
    case IX_APPROVE:
      return vote(&params, ACTION_APPROVE, true);
    case IX_APPROVE_SIGNED:
      return vote(&params, ACTION_APPROVE, false);
    case IX_REJECT:
      return vote(&params, ACTION_REJECT, true);
    case IX_REJECT_SIGNED:
      return vote(&params, ACTION_REJECT, false);
    case IX_CANCEL:
      return cancel(&params, true);
    case IX_CANCEL_SIGNED:
      return cancel(&params, false);
    case IX_EXECUTE_UPGRADE:
      return execute_upgrade(&params);
    case IX_EXECUTE_SET_AUTHORITY:
      return execute_set_authority(&params);
    case IX_EXECUTE_CONFIG:
      return execute_config(&params);
    case IX_ADOPT_PROGRAM:
      return adopt_program(&params);
    default:
      return E_INSTRUCTION_FALLBACK_NOT_FOUND;
  }
}
