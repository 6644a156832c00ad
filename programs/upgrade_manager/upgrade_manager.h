/*
 * upgrade_manager: M-of-N sign-off and a timelock for program upgrades, on chain.
 *
 * Account layouts, wire constants and error codes, shared by the program's C files.
 * programs/upgrade_manager/client.py and idl.json describe the same layouts; the tests
 * check the three agree.
 */
#ifndef UPGRADE_MANAGER_H
#define UPGRADE_MANAGER_H

#include <solana_sdk.h>

/* sha256("global:<name>")[:8] and sha256("account:<Name>")[:8], read as LE u64. */
#define IX_CREATE_GOVERNANCE 0x9d635b1b5b692e86ULL
#define IX_PROPOSE_UPGRADE 0x06f4c7bf15e4124dULL
#define IX_PROPOSE_SET_AUTHORITY 0x3b819a141ed70ee7ULL
#define IX_PROPOSE_CONFIG 0xa09981eca0eef7a3ULL
#define IX_APPROVE 0x4c61757324d94a45ULL
#define IX_APPROVE_SIGNED 0xa2c327772bd1efa7ULL
#define IX_REJECT 0xe06f7283553f0787ULL
#define IX_REJECT_SIGNED 0x1269f457079a16cdULL
#define IX_CANCEL 0xbedcecdb29dfdbe8ULL
#define IX_CANCEL_SIGNED 0x0efe3ba9b01ce673ULL
#define IX_EXECUTE_UPGRADE 0x18d72742da64dbcdULL
#define IX_EXECUTE_SET_AUTHORITY 0x720de647e8aff1eaULL
#define IX_EXECUTE_CONFIG 0x86080a75e76324bdULL
#define IX_ADOPT_PROGRAM 0xbb84276700af0460ULL
#define ACCOUNT_GOVERNANCE 0x312fd9490d588f12ULL
#define ACCOUNT_PROPOSAL 0x21358874bbbd5e1aULL

/* Anchor framework error codes. */
#define E_INSTRUCTION_MISSING 100
#define E_INSTRUCTION_FALLBACK_NOT_FOUND 101
#define E_INSTRUCTION_DID_NOT_DESERIALIZE 102
#define E_ACCOUNT_DISCRIMINATOR_ALREADY_SET 3000
#define E_ACCOUNT_DISCRIMINATOR_MISMATCH 3002
#define E_ACCOUNT_DID_NOT_DESERIALIZE 3003
#define E_ACCOUNT_NOT_ENOUGH_KEYS 3005
#define E_ACCOUNT_NOT_MUTABLE 3006
#define E_ACCOUNT_OWNED_BY_WRONG_PROGRAM 3007
#define E_ACCOUNT_NOT_SIGNER 3010

/* Program errors (client.py: UpgradeManagerError; idl.json: errors). */
#define E_INVALID_CONFIG 6000
#define E_NOT_A_MEMBER 6001
#define E_ALREADY_VOTED 6002
#define E_PROPOSAL_EXECUTED 6003
#define E_PROPOSAL_CANCELLED 6004
#define E_PROPOSAL_REJECTED 6005
#define E_STALE_PROPOSAL 6006
#define E_THRESHOLD_NOT_MET 6007
#define E_TIMELOCK_ACTIVE 6008
#define E_WRONG_PROPOSAL_KIND 6009
#define E_GOVERNANCE_MISMATCH 6010
#define E_INVALID_PDA 6011
#define E_INVALID_AUTHORITY 6012
#define E_PROGRAM_NOT_MANAGED 6013
#define E_INVALID_PROGRAM 6014
#define E_PROGRAM_MISMATCH 6015
#define E_INVALID_BUFFER 6016
#define E_BUFFER_MISMATCH 6017
#define E_BUFFER_AUTHORITY_MISMATCH 6018
#define E_HASH_MISMATCH 6019
#define E_INVALID_INSTRUCTIONS_SYSVAR 6020
#define E_MISSING_SIGNATURE_VERIFICATION 6021
#define E_INVALID_SIGNATURE_INSTRUCTION 6022
#define E_FOREIGN_SIGNATURE_OFFSETS 6023
#define E_MESSAGE_MISMATCH 6024
#define E_NOT_PROPOSER_OR_MEMBER 6025
#define E_NEW_AUTHORITY_MISMATCH 6026
#define E_OVERFLOW 6027
#define E_ENVELOPE_SIGNER_COUNT 6028
#define E_ENVELOPE_SIGNER 6029
#define E_ENVELOPE_FORMAT 6030
#define E_ENVELOPE_APPLICATION_DOMAIN 6031
#define E_ENVELOPE_LENGTH 6032
#define E_NOT_ALLOWED_TO_PROPOSE 6033
#define E_SPILL_MISMATCH 6034
#define E_EMERGENCY_THRESHOLD_BELOW_THRESHOLD 6035
#define E_INVALID_MEMBER_KEY 6036

/* Nine members keep the worst-case config-change approval (every member's base58 key
 * and the cluster's genesis hash in the signed text, in the standard envelope that also
 * names the signer) inside one relayed transaction of 1232 bytes. */
#define MAX_MEMBERS 9
/* Keeps approved_at + timelock far from i64 overflow (2^32 s is 136 years). */
#define MAX_TIMELOCK_SECONDS (1ULL << 32)

enum ProposalKind {
  KIND_UPGRADE = 0,
  KIND_EMERGENCY_UPGRADE = 1, /* emergency threshold and timelock (rollbacks) */
  KIND_SET_AUTHORITY = 2,     /* hand a managed program to another upgrade authority */
  KIND_CONFIG = 3,            /* new members, thresholds, timelocks */
};

enum ProposalStatus {
  STATUS_ACTIVE = 0,
  STATUS_APPROVED = 1, /* threshold met at approved_at; the timelock runs from there */
  STATUS_EXECUTED = 2,
  STATUS_CANCELLED = 3,
  STATUS_REJECTED = 4, /* enough rejections that the threshold can no longer be met */
};

enum Action { ACTION_APPROVE = 0, ACTION_REJECT = 1, ACTION_CANCEL = 2 };

/* Governance, PDA ["governance", create_key]; 464 bytes. */
typedef struct {
  uint64_t discriminator;
  SolPubkey create_key;      /* signer of create_governance; seed of this PDA */
  SolPubkey authority;       /* PDA ["authority", governance]: the upgrade authority */
  uint64_t proposal_count;   /* index of the last proposal (the first is 1) */
  uint64_t timelock;         /* seconds from approval to execution */
  uint64_t emergency_timelock;
  uint32_t config_version;   /* bumped by every config change; older proposals go stale */
  uint8_t threshold;
  uint8_t emergency_threshold;
  uint8_t member_count;
  uint8_t bump;
  uint8_t authority_bump;
  uint8_t reserved[7];
  SolPubkey members[MAX_MEMBERS];
  uint8_t genesis_hash[32];  /* the cluster's, given at creation: named in every signed line */
  SolPubkey proposer;        /* besides members, the one key that may propose; 0: none */
} Governance;

/* Proposal, PDA ["proposal", governance, index u64 LE]; 656 bytes. */
typedef struct {
  uint64_t discriminator;
  SolPubkey governance;
  uint64_t index;
  SolPubkey proposer;
  uint8_t kind;
  uint8_t status;
  uint8_t bump;
  uint8_t reserved0;
  uint32_t config_version;   /* the governance's at creation */
  uint32_t approvals;        /* bit i: members[i] approved */
  uint32_t rejections;       /* bit i: members[i] rejected */
  int64_t created_at;
  int64_t approved_at;       /* 0 until the threshold is met */
  int64_t closed_at;         /* when executed, cancelled or rejected; else 0 */
  SolPubkey program;         /* upgrade, set-authority */
  SolPubkey buffer;          /* upgrade */
  uint8_t buffer_hash[32];   /* upgrade: SHA-256 of buffer[37:], trailing zeros stripped */
  SolPubkey new_authority;   /* set-authority */
  uint64_t new_timelock;     /* config: the proposed governance settings */
  uint64_t new_emergency_timelock;
  uint8_t new_threshold;
  uint8_t new_emergency_threshold;
  uint8_t new_member_count;
  uint8_t reserved1[5];
  SolPubkey new_members[MAX_MEMBERS];
  uint8_t genesis_hash[32];  /* the governance's: the signed line names the cluster */
  SolPubkey spill;           /* upgrade: where the buffer's lamports go, fixed at proposal */
  SolPubkey new_proposer;    /* config */
} Proposal;

_Static_assert(sizeof(Governance) == 464, "Governance layout");
_Static_assert(sizeof(Proposal) == 656, "Proposal layout");

/* The longest approval text; `scratch` below must hold this many bytes. */
#define MAX_TEXT 1100

/* What the Ed25519 precompile verified: `size` bytes at `msg` signed by `signer`. */
typedef struct {
  const SolPubkey *signer;
  const uint8_t *msg;
  uint64_t size;
} SignedMessage;

/* SUCCESS if `m` is the approval text for `action` on `proposal` (rebuilt into
 * `scratch`) in an off-chain message envelope this program accepts: the legacy header,
 * or the standard v0 one with the signer as its one signer, format 0 and an application
 * domain of zero or the governance's address. Otherwise the error naming what differs. */
uint64_t check_signed_message(const SolPubkey *governance, const Proposal *proposal,
                              uint8_t action, const SignedMessage *m, uint8_t *scratch);

#endif /* UPGRADE_MANAGER_H */
