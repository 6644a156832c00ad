"""programs.loader against the real upgradeable loader running in LiteSVM."""

from __future__ import annotations

import hashlib
import struct

import pytest
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.sysvar import CLOCK, RENT
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionMetadata

from core.errors import InputError, NotABuffer
from programs import loader

TOKEN_ID = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
MEMO_ID = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
SOL = 1_000_000_000


@pytest.fixture(scope="module")
def elfs() -> tuple[bytes, bytes]:
    """(memo, token): two real sBPF programs of very different sizes, from LiteSVM."""
    svm = LiteSVM()
    # Memo is bundled under the non-upgradeable loader: the account data is the ELF.
    memo = bytes(svm.get_account(MEMO_ID).data)
    # Token is bundled as an upgradeable program: its ELF sits in ProgramData.
    token_pd = bytes(svm.get_account(loader.programdata_address(TOKEN_ID)).data)
    token = token_pd[loader.PROGRAMDATA_METADATA_SIZE :]
    assert memo[:4] == token[:4] == b"\x7fELF"
    assert len(token) > 10 * len(memo)
    return memo, token


class Chain:
    """A LiteSVM with a funded payer and helpers for loader round trips."""

    def __init__(self) -> None:
        self.svm = LiteSVM()
        self.payer = Keypair()
        self.svm.airdrop(self.payer.pubkey(), 1_000 * SOL)

    def send(
        self, ixs: list[Instruction], *signers: Keypair
    ) -> TransactionMetadata | FailedTransactionMetadata:
        # A fresh blockhash per send: a retried identical transaction would be
        # refused as AlreadyProcessed, which is not what these tests are about.
        self.svm.expire_blockhash()
        tx = Transaction.new_signed_with_payer(
            ixs, self.payer.pubkey(), [self.payer, *signers], self.svm.latest_blockhash()
        )
        return self.svm.send_transaction(tx)

    def ok(self, ixs: list[Instruction], *signers: Keypair) -> TransactionMetadata:
        result = self.send(ixs, *signers)
        assert isinstance(result, TransactionMetadata), result
        return result

    def fail(self, ixs: list[Instruction], *signers: Keypair) -> str:
        """The error and logs of a transaction that must fail, as one string."""
        result = self.send(ixs, *signers)
        assert isinstance(result, FailedTransactionMetadata), result
        return f"{result.err()} {result.meta().logs()}"

    def rent(self, size: int) -> int:
        return self.svm.minimum_balance_for_rent_exemption(size)

    def data(self, address: Pubkey) -> bytes:
        return bytes(self.svm.get_account(address).data)

    def balance(self, address: Pubkey) -> int:
        return self.svm.get_balance(address) or 0

    def next_slot(self) -> None:
        # The loader refuses to touch a program twice in one slot.
        self.svm.warp_to_slot(self.svm.get_clock().slot + 1)

    def write_buffer(self, elf: bytes, authority: Keypair) -> Pubkey:
        buffer = Keypair()
        self.ok(
            loader.create_buffer(
                self.payer.pubkey(),
                buffer.pubkey(),
                authority.pubkey(),
                self.rent(loader.BUFFER_METADATA_SIZE + len(elf)),
                len(elf),
            ),
            buffer,
        )
        for offset, chunk in loader.write_chunks(elf):
            self.ok([loader.write(buffer.pubkey(), authority.pubkey(), offset, chunk)], authority)
        return buffer.pubkey()

    def deploy(self, elf: bytes, authority: Keypair, max_data_len: int | None = None) -> Pubkey:
        buffer = self.write_buffer(elf, authority)
        program = Keypair()
        self.ok(
            loader.deploy_program(
                self.payer.pubkey(),
                program.pubkey(),
                buffer,
                authority.pubkey(),
                self.rent(loader.PROGRAM_ACCOUNT_SIZE),
                len(elf) if max_data_len is None else max_data_len,
            ),
            program,
            authority,
        )
        return program.pubkey()

    def invoke(
        self, program: Pubkey, data: bytes
    ) -> TransactionMetadata | FailedTransactionMetadata:
        return self.send([Instruction(program, data, [])])


def runs_memo(chain: Chain, program: Pubkey) -> bool:
    """Memo logs any UTF-8 it is given; Token rejects the same bytes."""
    result = chain.invoke(program, b"runbooks")
    return isinstance(result, TransactionMetadata) and any(
        "Memo (len 8)" in line for line in result.logs()
    )


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def authority() -> Keypair:
    return Keypair()


# --- buffers ---------------------------------------------------------------------------


def test_write_buffer_in_chunks(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    _, token = elfs
    buffer = chain.write_buffer(token, authority)
    data = chain.data(buffer)

    assert len(data) == loader.BUFFER_METADATA_SIZE + len(token)
    assert loader.decode_state(data) == loader.Buffer(authority=authority.pubkey())
    assert loader.program_bytes(data) == token
    assert loader.buffer_hash(data) == loader.verifiable_hash(token)


def test_write_needs_the_buffer_authority(
    chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]
):
    memo, _ = elfs
    buffer = chain.write_buffer(memo, authority)
    intruder = Keypair()
    err = chain.fail([loader.write(buffer, intruder.pubkey(), 0, b"evil")], intruder)
    assert "IncorrectAuthority" in err
    assert loader.program_bytes(chain.data(buffer)) == memo


def test_close_buffer_pays_the_recipient(
    chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]
):
    memo, _ = elfs
    buffer = chain.write_buffer(memo, authority)
    lamports = chain.balance(buffer)
    recipient = Pubkey.new_unique()

    chain.ok([loader.close(buffer, recipient, authority.pubkey())], authority)

    assert chain.balance(recipient) == lamports > 0
    assert chain.svm.get_account(buffer) is None


def test_set_buffer_authority(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    memo, _ = elfs
    buffer = chain.write_buffer(memo, authority)
    new = Keypair()

    chain.ok([loader.set_authority(buffer, authority.pubkey(), new.pubkey())], authority)
    assert loader.decode_state(chain.data(buffer)) == loader.Buffer(authority=new.pubkey())
    # The old authority lost the buffer; the new one writes.
    assert "IncorrectAuthority" in chain.fail(
        [loader.write(buffer, authority.pubkey(), 0, memo[:4])], authority
    )
    chain.ok([loader.write(buffer, new.pubkey(), 0, memo[:4])], new)


# --- programs --------------------------------------------------------------------------


def test_deploy(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    memo, _ = elfs
    slot = chain.svm.get_clock().slot
    program = chain.deploy(memo, authority, max_data_len=len(memo) + 1000)
    programdata = loader.programdata_address(program)

    assert loader.decode_state(chain.data(program)) == loader.Program(programdata=programdata)
    pd = chain.data(programdata)
    assert loader.decode_state(pd) == loader.ProgramData(slot=slot, authority=authority.pubkey())
    # Room for future upgrades is zero padding, which the verifiable hash ignores.
    assert len(pd) == loader.PROGRAMDATA_METADATA_SIZE + len(memo) + 1000
    assert loader.program_bytes(pd) == memo + bytes(1000)
    assert loader.programdata_hash(pd) == loader.verifiable_hash(memo)
    assert runs_memo(chain, program)


def test_upgrade_runs_the_new_code(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    memo, token = elfs
    program = chain.deploy(memo, authority, max_data_len=len(token))
    programdata = loader.programdata_address(program)
    buffer = chain.write_buffer(token, authority)
    buffer_lamports = chain.balance(buffer)
    spill = Pubkey.new_unique()
    upgrade = [loader.upgrade(program, buffer, authority.pubkey(), spill)]

    assert "deployed in this block already" in chain.fail(upgrade, authority)

    chain.next_slot()
    chain.ok(upgrade, authority)

    pd = chain.data(programdata)
    assert loader.decode_state(pd) == loader.ProgramData(
        slot=chain.svm.get_clock().slot, authority=authority.pubkey()
    )
    assert loader.programdata_hash(pd) == loader.verifiable_hash(token)
    # ProgramData was already funded for max_data_len, so the whole buffer spills.
    assert chain.balance(spill) == buffer_lamports
    assert chain.svm.get_account(buffer) is None
    assert not runs_memo(chain, program)
    assert "Invalid instruction" in " ".join(chain.invoke(program, b"runbooks").meta().logs())


def test_upgrade_needs_the_upgrade_authority(
    chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]
):
    memo, _ = elfs
    program = chain.deploy(memo, authority)
    intruder = Keypair()
    buffer = chain.write_buffer(memo, intruder)
    chain.next_slot()
    err = chain.fail(
        [loader.upgrade(program, buffer, intruder.pubkey(), intruder.pubkey())], intruder
    )
    assert "IncorrectAuthority" in err


def test_set_authority_then_immutable(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    memo, token = elfs
    program = chain.deploy(memo, authority, max_data_len=len(token))
    programdata = loader.programdata_address(program)
    new = Keypair()
    chain.next_slot()

    # Unchecked: the new authority does not sign.
    chain.ok([loader.set_authority(programdata, authority.pubkey(), new.pubkey())], authority)
    assert loader.decode_state(chain.data(programdata)).authority == new.pubkey()
    old_buffer = chain.write_buffer(token, authority)
    assert "IncorrectAuthority" in chain.fail(
        [loader.upgrade(program, old_buffer, authority.pubkey(), authority.pubkey())], authority
    )

    chain.ok([loader.set_authority(programdata, new.pubkey(), None)], new)
    assert loader.decode_state(chain.data(programdata)).authority is None

    buffer = chain.write_buffer(token, new)
    assert "Immutable" in chain.fail(
        [loader.upgrade(program, buffer, new.pubkey(), new.pubkey())], new
    )
    assert runs_memo(chain, program)


def test_set_authority_checked_needs_the_new_authority_to_sign(
    chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]
):
    memo, _ = elfs
    program = chain.deploy(memo, authority)
    programdata = loader.programdata_address(program)
    new = Keypair()
    chain.next_slot()

    checked = loader.set_authority_checked(programdata, authority.pubkey(), new.pubkey())
    assert [m.is_signer for m in checked.accounts] == [False, True, True]

    # The same instruction with the new authority demoted from signer: the loader refuses.
    unsigned = Instruction(
        checked.program_id,
        checked.data,
        [*checked.accounts[:2], AccountMeta(new.pubkey(), is_signer=False, is_writable=False)],
    )
    assert "MissingRequiredSignature" in chain.fail([unsigned], authority)
    assert loader.decode_state(chain.data(programdata)).authority == authority.pubkey()

    chain.ok([checked], authority, new)
    assert loader.decode_state(chain.data(programdata)).authority == new.pubkey()


def test_extend_program_makes_room_for_a_bigger_upgrade(
    chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]
):
    memo, token = elfs
    program = chain.deploy(memo, authority)
    programdata = loader.programdata_address(program)
    buffer = chain.write_buffer(token, authority)
    chain.next_slot()
    upgrade = [loader.upgrade(program, buffer, authority.pubkey(), chain.payer.pubkey())]

    assert "AccountDataTooSmall" in chain.fail(upgrade, authority)

    before = len(chain.data(programdata))
    additional = len(token) - len(memo)
    # Permissionless: the payer funds the extra rent, no authority signs.
    chain.ok([loader.extend_program(program, chain.payer.pubkey(), additional)])
    assert len(chain.data(programdata)) == before + additional
    assert chain.balance(programdata) >= chain.rent(before + additional)

    chain.next_slot()
    chain.ok(upgrade, authority)
    assert loader.programdata_hash(chain.data(programdata)) == loader.verifiable_hash(token)


def test_close_program(chain: Chain, authority: Keypair, elfs: tuple[bytes, bytes]):
    memo, _ = elfs
    program = chain.deploy(memo, authority)
    programdata = loader.programdata_address(program)
    lamports = chain.balance(programdata)
    recipient = Pubkey.new_unique()
    close = [loader.close(programdata, recipient, authority.pubkey(), program)]

    assert "deployed in this block already" in chain.fail(close, authority)

    chain.next_slot()
    chain.ok(close, authority)
    assert chain.balance(recipient) == lamports > 0
    assert chain.svm.get_account(programdata) is None
    # The program account stays as a tombstone. Whether it still executes is not
    # checked: LiteSVM's program cache sometimes keeps serving a closed program.
    assert loader.decode_state(chain.data(program)) == loader.Program(programdata)

    chain.next_slot()
    buffer = chain.write_buffer(memo, authority)
    # Closing emptied ProgramData, so there is no room left for any code.
    assert "AccountDataTooSmall" in chain.fail(
        [loader.upgrade(program, buffer, authority.pubkey(), authority.pubkey())], authority
    )


# --- wire format -----------------------------------------------------------------------


def test_instruction_data_and_accounts():
    a, b, c, d = (Pubkey.new_unique() for _ in range(4))
    pd = loader.programdata_address(b)

    def metas(ix: Instruction) -> list[tuple[Pubkey, bool, bool]]:
        return [(m.pubkey, m.is_signer, m.is_writable) for m in ix.accounts]

    ix = loader.initialize_buffer(a, b)
    assert ix.program_id == loader.LOADER_ID
    assert (bytes(ix.data), metas(ix)) == (b"\0\0\0\0", [(a, False, True), (b, False, False)])

    ix = loader.write(a, b, 7, b"xyz")
    assert bytes(ix.data) == struct.pack("<IIQ", 1, 7, 3) + b"xyz"
    assert metas(ix) == [(a, False, True), (b, True, False)]

    ix = loader.deploy_with_max_data_len(a, b, c, d, 4096)
    assert bytes(ix.data) == struct.pack("<IQ", 2, 4096)
    assert metas(ix) == [
        (a, True, True),
        (pd, False, True),
        (b, False, True),
        (c, False, True),
        (RENT, False, False),
        (CLOCK, False, False),
        (Pubkey.from_string("11111111111111111111111111111111"), False, False),
        (d, True, False),
    ]

    ix = loader.upgrade(b, c, d, a)
    assert bytes(ix.data) == struct.pack("<I", 3)
    assert metas(ix) == [
        (pd, False, True),
        (b, False, True),
        (c, False, True),
        (a, False, True),
        (RENT, False, False),
        (CLOCK, False, False),
        (d, True, False),
    ]

    assert bytes(loader.set_authority(a, b, c).data) == struct.pack("<I", 4)
    assert len(loader.set_authority(a, b, None).accounts) == 2
    assert bytes(loader.close(a, b, c).data) == struct.pack("<I", 5)
    assert metas(loader.close(pd, a, c, b))[3] == (b, False, True)
    assert bytes(loader.set_authority_checked(a, b, c).data) == struct.pack("<I", 7)

    ix = loader.extend_program(b, a, 10_240)
    assert bytes(ix.data) == struct.pack("<II", 6, 10_240)
    assert metas(ix)[:2] == [(pd, False, True), (b, False, True)]
    assert metas(ix)[3] == (a, True, True)
    assert len(loader.extend_program(b, None, 1).accounts) == 2


@pytest.mark.parametrize(
    "build",
    [
        lambda p: loader.write(p, p, -1, b""),
        lambda p: loader.write(p, p, 2**32, b""),
        lambda p: loader.deploy_with_max_data_len(p, p, p, p, -5),
        lambda p: loader.extend_program(p, None, 2**32),
        lambda p: loader.create_buffer(p, p, p, 0, -1),
    ],
)
def test_out_of_range_arguments(build):
    with pytest.raises(InputError):
        build(Pubkey.new_unique())


def test_programdata_address_matches_the_bundled_token_program():
    svm = LiteSVM()
    state = loader.decode_state(bytes(svm.get_account(TOKEN_ID).data))
    assert state == loader.Program(programdata=loader.programdata_address(TOKEN_ID))


# --- states and hashes -----------------------------------------------------------------

AUTH = Pubkey.new_unique()


@pytest.mark.parametrize(
    ("data", "state"),
    [
        (b"\0\0\0\0", loader.Uninitialized()),
        (struct.pack("<IB", 1, 1) + bytes(AUTH) + b"code", loader.Buffer(AUTH)),
        (struct.pack("<IB", 1, 0) + bytes(32), loader.Buffer(None)),
        (struct.pack("<I", 2) + bytes(AUTH), loader.Program(AUTH)),
        (struct.pack("<IQB", 3, 42, 1) + bytes(AUTH), loader.ProgramData(42, AUTH)),
        (struct.pack("<IQB", 3, 7, 0) + bytes(32), loader.ProgramData(7, None)),
    ],
)
def test_decode_state(data: bytes, state: loader.LoaderState):
    assert loader.decode_state(data) == state


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x01\x00", "too short"),
        (struct.pack("<I", 9) + bytes(40), "unknown loader account state tag 9"),
        (b"\x7fELF" + bytes(64), "unknown loader account state tag"),
        (struct.pack("<IB", 1, 1) + bytes(10), "Buffer account data is 15 bytes"),
        (struct.pack("<I", 2) + bytes(8), "Program account data is 12 bytes"),
        (struct.pack("<IQ", 3, 1) + bytes(20), "ProgramData account data is 32 bytes"),
        (struct.pack("<IB", 1, 2) + bytes(32), "option byte is 2"),
    ],
)
def test_decode_state_rejects_garbage(data: bytes, message: str):
    with pytest.raises(InputError, match=message):
        loader.decode_state(data)


def test_hash_helpers_check_the_account_kind():
    program = struct.pack("<I", 2) + bytes(AUTH)
    programdata = struct.pack("<IQB", 3, 1, 0) + bytes(32) + b"code"
    with pytest.raises(InputError, match="Program account"):
        loader.program_bytes(program)
    with pytest.raises(InputError, match="Uninitialized"):
        loader.program_bytes(bytes(4))
    with pytest.raises(NotABuffer, match="ProgramData, not a Buffer"):
        loader.buffer_hash(programdata)
    with pytest.raises(InputError, match="not ProgramData"):
        loader.programdata_hash(program)


def test_verifiable_hash_strips_trailing_zeros_only():
    elf = b"\x7fELF\x00\x01\x00\x02"
    expected = hashlib.sha256(elf).hexdigest()
    assert loader.verifiable_hash(elf) == expected
    assert loader.verifiable_hash(elf + bytes(5000)) == expected
    assert loader.verifiable_hash(b"\x00" + elf) != expected
    assert loader.verifiable_hash(b"") == hashlib.sha256(b"").hexdigest()


# --- chunks and transaction size -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 915, 916, 917, 3 * 916, 10_000])
def test_write_chunks_cover_the_data_exactly(size: int):
    data = bytes(i % 251 for i in range(size))
    chunks = list(loader.write_chunks(data))
    assert b"".join(chunk for _, chunk in chunks) == data
    offset = 0
    for at, chunk in chunks:
        assert at == offset
        assert 0 < len(chunk) <= loader.WRITE_CHUNK_SIZE
        offset += len(chunk)
    assert [at for at, _ in loader.write_chunks(data, 1000)] == list(range(0, size, 1000))


def test_write_chunks_rejects_a_bad_chunk_size():
    with pytest.raises(InputError):
        list(loader.write_chunks(b"abc", 0))


def write_transaction_size(chunk_len: int) -> int:
    """A Write as programs.send sends it: after a compute-unit limit and price."""
    payer, authority = Keypair(), Keypair()
    ix = loader.write(Pubkey.new_unique(), authority.pubkey(), 2**32 - 1, bytes(chunk_len))
    budget = [set_compute_unit_limit(1_400_000), set_compute_unit_price(2**64 - 1)]
    message = Message.new_with_blockhash([*budget, ix], payer.pubkey(), Hash.new_unique())
    return len(bytes(Transaction([payer, authority], message, message.recent_blockhash)))


def test_write_chunk_size_is_the_largest_that_fits_a_packet():
    assert write_transaction_size(loader.WRITE_CHUNK_SIZE) == loader.PACKET_DATA_SIZE == 1232
    assert write_transaction_size(loader.WRITE_CHUNK_SIZE + 1) > loader.PACKET_DATA_SIZE
