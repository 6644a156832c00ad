"""Whether 32 bytes are an ed25519 public key someone can sign for.

A key that is not a point on the curve, or is a point of small order (the identity
``01 00..00`` and the other seven torsion points), has no usable secret key behind it or
lets anyone forge signatures for it: such a key as a governance member is a seat nobody
holds, or one everybody holds. upgrade_manager refuses them on chain with the same rule
(``sol_curve_validate_point`` and ``[8]P != identity``); this module refuses them before
anything is sent. Plain integer arithmetic (RFC 8032, section 5.1.3): it runs on a few
keys per config, so speed does not matter.
"""

from __future__ import annotations

P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
COFACTOR = 8

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def decompress(key: bytes) -> Point | None:
    """The point ``key`` encodes, or None when it is not on the curve (RFC 8032 5.1.3)."""
    if len(key) != 32:
        return None
    y = int.from_bytes(key, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _is_identity(p: Point) -> bool:
    x, y, z, _ = p
    return x % P == 0 and (y - z) % P == 0


def is_large_order_point(key: bytes) -> bool:
    """True when ``key`` is on the curve and ``[8]key`` is not the identity."""
    point = decompress(key)
    if point is None:
        return False
    multiple = point
    for _ in range(3):  # [8]P by three doublings
        multiple = _add(multiple, multiple)
    return not _is_identity(multiple)


def small_order_points() -> list[bytes]:
    """The canonical encodings of the eight points of order dividing 8 (for tests and
    for the on-chain blocklist's cross-check)."""
    found = []
    for y in (1, P - 1, 0, _order8_y(), P - _order8_y()):
        for sign in (0, 1):
            key = (y | sign << 255).to_bytes(32, "little")
            point = decompress(key)
            if point is not None and not is_large_order_point(key) and key not in found:
                found.append(key)
    return found


def _order8_y() -> int:
    # y of the four points of order 8 (up to sign); libsodium's small-order blocklist
    # lists the same value as c7176a70...ac037a (little-endian).
    return 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
