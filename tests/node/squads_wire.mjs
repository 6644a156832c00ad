// Build Squads v4 instructions, PDAs and account bytes with the official SDK @sqds/multisig,
// for tests/programs/test_squads_wire.py to compare with programs/squads/client.py.
// Reads one {"ops": [...]} a line on stdin, prints one {"results": [...]} a line (the same
// order), or {"error": "<why>"} when the SDK refuses. Each op:
//   {"op": "pdas", "create_key", "vault_index", "transaction_index", "ephemeral_index"}
//   {"op": "ix", "name": "<instructions.* function>", "args": {...}} -> program id, data
//     hex, keys [[pubkey, is_signer, is_writable], ...]. Public keys are base58 strings,
//     u64s decimal strings; vaultTransactionCreate takes "instructions": [{program_id,
//     data (hex), keys}], compiled by the SDK into its TransactionMessage with the vault as
//     payer; vaultTransactionExecute takes "account": the VaultTransaction bytes (hex),
//     which the SDK reads through a connection that holds only that account.
//   {"op": "serialize", "account": "Multisig" | "Proposal" | "VaultTransaction",
//     "fields": {...}} -> hex of accounts.<account>.fromArgs(fields).serialize().
// The packages load from RUNBOOKS_NODE_DIR (scripts/install-node-clients: .build/node).
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.RUNBOOKS_NODE_DIR || path.join(here, '..', '..', '.build', 'node');
const require = createRequire(path.join(modules, 'package.json'));
const multisig = require('@sqds/multisig');
const web3 = require('@solana/web3.js');
const BN = require('bn.js');

const key = s => new web3.PublicKey(s);
const optKey = s => (s === null || s === undefined ? null : key(s));
const hex = bytes => Buffer.from(bytes).toString('hex');
const metas = keys => keys.map(([k, isSigner, isWritable]) => ({ pubkey: key(k), isSigner, isWritable }));
const describe = ix => ({
    program_id: ix.programId.toBase58(),
    data: hex(ix.data),
    keys: ix.keys.map(m => [m.pubkey.toBase58(), m.isSigner, m.isWritable]),
});

function pdas(op) {
    const [ms, msBump] = multisig.getMultisigPda({ createKey: key(op.create_key) });
    const [vault, vaultBump] = multisig.getVaultPda({ multisigPda: ms, index: op.vault_index });
    const index = BigInt(op.transaction_index);
    const [transaction, txBump] = multisig.getTransactionPda({ multisigPda: ms, index });
    const [proposal, proposalBump] = multisig.getProposalPda({ multisigPda: ms, transactionIndex: index });
    const [ephemeral, ephemeralBump] = multisig.getEphemeralSignerPda({
        transactionPda: transaction,
        ephemeralSignerIndex: op.ephemeral_index,
    });
    const [config, configBump] = multisig.getProgramConfigPda({});
    const out = { multisig: ms, vault, transaction, proposal, ephemeral, program_config: config };
    const bumps = [msBump, vaultBump, txBump, proposalBump, ephemeralBump, configBump];
    return Object.fromEntries(Object.entries(out).map(([k, v], i) => [k, [v.toBase58(), bumps[i]]]));
}

async function instruction(name, a) {
    const ix = multisig.instructions;
    const memo = a.memo ?? undefined;
    switch (name) {
        case 'multisigCreateV2':
            return ix.multisigCreateV2({
                treasury: key(a.treasury),
                creator: key(a.creator),
                createKey: key(a.createKey),
                multisigPda: multisig.getMultisigPda({ createKey: key(a.createKey) })[0],
                configAuthority: optKey(a.configAuthority),
                threshold: a.threshold,
                members: a.members.map(m => ({ key: key(m.key), permissions: { mask: m.permissions } })),
                timeLock: a.timeLock,
                rentCollector: optKey(a.rentCollector),
                memo,
            });
        case 'vaultTransactionCreate': {
            const ms = key(a.multisig);
            const [vault] = multisig.getVaultPda({ multisigPda: ms, index: a.vaultIndex });
            const transactionMessage = new web3.TransactionMessage({
                payerKey: vault,
                recentBlockhash: web3.PublicKey.default.toBase58(),
                instructions: a.instructions.map(
                    i => new web3.TransactionInstruction({
                        programId: key(i.program_id),
                        keys: metas(i.keys),
                        data: Buffer.from(i.data, 'hex'),
                    }),
                ),
            });
            return ix.vaultTransactionCreate({
                multisigPda: ms,
                transactionIndex: BigInt(a.transactionIndex),
                creator: key(a.creator),
                rentPayer: optKey(a.rentPayer) ?? undefined,
                vaultIndex: a.vaultIndex,
                ephemeralSigners: a.ephemeralSigners,
                transactionMessage,
                memo,
            });
        }
        case 'proposalCreate':
            return ix.proposalCreate({
                multisigPda: key(a.multisig),
                transactionIndex: BigInt(a.transactionIndex),
                creator: key(a.creator),
                rentPayer: optKey(a.rentPayer) ?? undefined,
                isDraft: a.isDraft,
            });
        case 'proposalApprove':
        case 'proposalReject':
        case 'proposalCancel':
            return ix[name]({
                multisigPda: key(a.multisig),
                transactionIndex: BigInt(a.transactionIndex),
                member: key(a.member),
                memo,
            });
        case 'vaultTransactionExecute': {
            const data = Buffer.from(a.account, 'hex');
            const ms = key(a.multisig);
            const index = BigInt(a.transactionIndex);
            const [holder] = multisig.getTransactionPda({ multisigPda: ms, index });
            // A connection holding the one account the SDK reads; anything else is absent.
            const connection = {
                getAccountInfo: async address =>
                    address.equals(holder)
                        ? { data, owner: multisig.PROGRAM_ID, lamports: 1, executable: false }
                        : null,
                getAddressLookupTable: async () => ({ value: null }),
            };
            const { instruction: built } = await ix.vaultTransactionExecute({
                connection,
                multisigPda: ms,
                transactionIndex: index,
                member: key(a.member),
            });
            return built;
        }
        default:
            throw new Error(`no instruction ${name} here`);
    }
}

function serialize(account, f) {
    const big = v => new BN(String(v));
    const keys = list => list.map(key);
    const bytes = h => Uint8Array.from(Buffer.from(h, 'hex'));
    let built;
    if (account === 'Multisig') {
        built = multisig.accounts.Multisig.fromArgs({
            createKey: key(f.createKey),
            configAuthority: key(f.configAuthority),
            threshold: f.threshold,
            timeLock: f.timeLock,
            transactionIndex: big(f.transactionIndex),
            staleTransactionIndex: big(f.staleTransactionIndex),
            rentCollector: optKey(f.rentCollector),
            bump: f.bump,
            members: f.members.map(m => ({ key: key(m.key), permissions: { mask: m.permissions } })),
        });
    } else if (account === 'Proposal') {
        const status = f.status.kind === 'Executing'
            ? { __kind: 'Executing' }
            : { __kind: f.status.kind, timestamp: big(f.status.timestamp) };
        built = multisig.accounts.Proposal.fromArgs({
            multisig: key(f.multisig),
            transactionIndex: big(f.transactionIndex),
            status,
            bump: f.bump,
            approved: keys(f.approved),
            rejected: keys(f.rejected),
            cancelled: keys(f.cancelled),
        });
    } else if (account === 'VaultTransaction') {
        const m = f.message;
        built = multisig.accounts.VaultTransaction.fromArgs({
            multisig: key(f.multisig),
            creator: key(f.creator),
            index: big(f.index),
            bump: f.bump,
            vaultIndex: f.vaultIndex,
            vaultBump: f.vaultBump,
            ephemeralSignerBumps: bytes(f.ephemeralSignerBumps),
            message: {
                numSigners: m.numSigners,
                numWritableSigners: m.numWritableSigners,
                numWritableNonSigners: m.numWritableNonSigners,
                accountKeys: keys(m.accountKeys),
                instructions: m.instructions.map(i => ({
                    programIdIndex: i.programIdIndex,
                    accountIndexes: bytes(i.accountIndexes),
                    data: bytes(i.data),
                })),
                addressTableLookups: m.addressTableLookups.map(l => ({
                    accountKey: key(l.accountKey),
                    writableIndexes: bytes(l.writableIndexes),
                    readonlyIndexes: bytes(l.readonlyIndexes),
                })),
            },
        });
    } else {
        throw new Error(`no account ${account} here`);
    }
    return hex(built.serialize()[0]);
}

async function answer(ops) {
    const results = [];
    for (const op of ops) {
        if (op.op === 'pdas') results.push(pdas(op));
        else if (op.op === 'ix') results.push(describe(await instruction(op.name, op.args)));
        else if (op.op === 'serialize') results.push(serialize(op.account, op.fields));
        else throw new Error(`unknown op ${op.op}`);
    }
    return results;
}

// One request a line, one answer a line, until stdin closes: the tests keep one node
// running for the whole session instead of paying its start (and the SDK's load) per call.
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    let reply;
    try {
        reply = { results: await answer(JSON.parse(line).ops) };
    } catch (err) {
        reply = { error: String(err?.stack || err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
}
