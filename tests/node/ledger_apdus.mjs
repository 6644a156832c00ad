// What LedgerHQ's own clients send to a Ledger's Solana app, for tests/programs/
// test_ledger_wire.py to compare with programs/ledger.py byte for byte.
// Reads one {"ops": [...]} a line on stdin, prints one {"results": [...]} a line (the same
// order), or {"error": "<why>"}. Each op:
//   {"op": "get_address", "path": "44'/501'/0'"} -> [apdu hex] that
//     @ledgerhq/hw-app-solana's getAddress(path) exchanges
//   {"op": "sign", "path": "...", "message": hex} -> [apdu hex, ...] of its
//     signTransaction(path, message), in order
//   {"op": "frame", "apdu": hex} -> [report hex, ...]: @ledgerhq/devices' HID framing
//     (channel 0x0101, 64-byte reports) of that APDU
// The transport records each APDU and answers with canned bytes (a key, a signature):
// no device is involved. The packages load from RUNBOOKS_NODE_DIR (.build/node).
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.RUNBOOKS_NODE_DIR || path.join(here, '..', '..', '.build', 'node');
const require = createRequire(path.join(modules, 'package.json'));
const Transport = require('@ledgerhq/hw-transport').default;
const Solana = require('@ledgerhq/hw-app-solana').default;
const createHIDframing = require('@ledgerhq/devices/hid-framing').default;

const OK = Buffer.from([0x90, 0x00]);

class Recorder extends Transport {
    constructor(answer) {
        super();
        this.answer = answer;
        this.apdus = [];
    }
    async exchange(apdu) {
        this.apdus.push(Buffer.from(apdu).toString('hex'));
        return Buffer.concat([this.answer, OK]);
    }
}

async function run(op) {
    switch (op.op) {
        case 'get_address': {
            const t = new Recorder(Buffer.alloc(32, 7));
            await new Solana(t).getAddress(op.path);
            return t.apdus;
        }
        case 'sign': {
            const t = new Recorder(Buffer.alloc(64, 9));
            await new Solana(t).signTransaction(op.path, Buffer.from(op.message, 'hex'));
            return t.apdus;
        }
        case 'frame':
            return createHIDframing(0x0101, 64)
                .makeBlocks(Buffer.from(op.apdu, 'hex'))
                .map(b => b.toString('hex'));
        default:
            throw new Error(`unknown op ${op.op}`);
    }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
    try {
        const { ops } = JSON.parse(line);
        const results = [];
        for (const op of ops) results.push(await run(op));
        process.stdout.write(JSON.stringify({ results }) + '\n');
    } catch (err) {
        process.stdout.write(JSON.stringify({ error: String(err && err.stack ? err.stack : err) }) + '\n');
    }
}
