// Compile and sign a Solana off-chain message with @solana/kit, as a wallet built on kit
// does. Reads one JSON object a line on stdin (the secret key travels only there, never in
// argv or the environment):
//   {"secret_key": [64 integers, as a Solana CLI keypair file], "message": "<text>",
//    "version": 0 | 1, "application_domain": "<base58>" (v0; default 32 zero bytes),
//    "signatories": ["<base58>", ...] (default: the signer), "format": 0 | 1 | 2 (v0)}
// and prints {"envelope": "<hex of the bytes signed>", "signature": "<base58>",
// "signer": "<base58>"} on one line, or {"error": "<what kit refused>"}. When the signer
// is a required signatory the signature comes from signOffchainMessageEnvelope
// (partiallySign... when there are others); when it is not, kit refuses to sign the
// envelope, so the envelope's bytes are signed with kit's signBytes.
// The packages load from RUNBOOKS_NODE_DIR (scripts/install-node-clients: .build/node).
import { createRequire } from 'node:module';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.RUNBOOKS_NODE_DIR || path.join(here, '..', '..', '.build', 'node');
const kit = createRequire(path.join(modules, 'package.json'))('@solana/kit');

const ZERO_DOMAIN = '11111111111111111111111111111111'; // 32 zero bytes in base58

async function sign(input) {
    const keyPair = await kit.createKeyPairFromBytes(Uint8Array.from(input.secret_key));
    const signer = await kit.getAddressFromPublicKey(keyPair.publicKey);
    const signatories = (input.signatories ?? [signer]).map(a => ({ address: kit.address(a) }));
    const version = input.version ?? 0;
    let envelope;
    if (version === 0) {
        const format = input.format ?? kit.OffchainMessageContentFormat.RESTRICTED_ASCII_1232_BYTES_MAX;
        const content =
            format === kit.OffchainMessageContentFormat.RESTRICTED_ASCII_1232_BYTES_MAX
                ? kit.offchainMessageContentRestrictedAsciiOf1232BytesMax(input.message)
                : { format, text: input.message };
        envelope = kit.compileOffchainMessageV0Envelope({
            version: 0,
            applicationDomain: kit.offchainMessageApplicationDomain(
                input.application_domain ?? ZERO_DOMAIN,
            ),
            content,
            requiredSignatories: signatories,
        });
    } else if (version === 1) {
        envelope = kit.compileOffchainMessageV1Envelope({
            version: 1,
            content: input.message,
            requiredSignatories: signatories,
        });
    } else {
        throw new Error(`version ${version}: kit compiles off-chain messages v0 and v1`);
    }
    let signature;
    if (signatories.some(s => s.address === signer)) {
        const signed =
            signatories.length === 1
                ? await kit.signOffchainMessageEnvelope([keyPair], envelope)
                : await kit.partiallySignOffchainMessageEnvelope([keyPair], envelope);
        signature = signed.signatures[signer];
    } else {
        signature = await kit.signBytes(keyPair.privateKey, envelope.content);
    }
    return {
        envelope: kit.getBase16Decoder().decode(envelope.content),
        signature: kit.getBase58Decoder().decode(signature),
        signer,
    };
}

// One request a line, one answer a line, until stdin closes: the tests keep one node
// running for the whole session instead of paying its start (and kit's load) per signature.
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    let reply;
    try {
        reply = await sign(JSON.parse(line));
    } catch (error) {
        // The error names what kit refused; it never holds the secret key (only stdin did).
        reply = { error: `kit_offchain: ${error?.message ?? error}` };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
}
