"""Known-answer tests for the primitives WireGuard names (nsroute/wireguard/crypto.py).

Every expected value here comes from a published vector (cited at the test) or from an
independent construction written out in this file (BLAKE2s from RFC 7693, HMAC from
RFC 2104, the KDF from the WireGuard paper section 5.2), never from calling the function
under test a second time.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nsroute.wireguard import constants, crypto, noise

# ---------------------------------------------------------------- independent references

_M32 = 0xFFFFFFFF
_B2S_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
           0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_B2S_SIGMA = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
    (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
    (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
    (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
    (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
    (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
    (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
    (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
    (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0),
)


def _ror(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M32


def _g(v: list[int], a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    v[a] = (v[a] + v[b] + x) & _M32
    v[d] = _ror(v[d] ^ v[a], 16)
    v[c] = (v[c] + v[d]) & _M32
    v[b] = _ror(v[b] ^ v[c], 12)
    v[a] = (v[a] + v[b] + y) & _M32
    v[d] = _ror(v[d] ^ v[a], 8)
    v[c] = (v[c] + v[d]) & _M32
    v[b] = _ror(v[b] ^ v[c], 7)


def _compress(h: list[int], block: bytes, t: int, last: bool) -> list[int]:
    m = struct.unpack("<16I", block)
    v = h[:] + list(_B2S_IV)
    v[12] ^= t & _M32
    v[13] ^= (t >> 32) & _M32
    if last:
        v[14] ^= _M32
    for s in _B2S_SIGMA:
        _g(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _g(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _g(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _g(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _g(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _g(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _g(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _g(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    return [h[i] ^ v[i] ^ v[i + 8] for i in range(8)]


def blake2s_ref(data: bytes, key: bytes = b"", outlen: int = 32) -> bytes:
    """BLAKE2s written out from RFC 7693 section 3 (pure Python, independent of hashlib)."""
    h = list(_B2S_IV)
    h[0] ^= 0x01010000 ^ (len(key) << 8) ^ outlen
    if key:
        data = key.ljust(64, b"\0") + data
    nblocks = max(1, (len(data) + 63) // 64)
    t = 0
    for i in range(nblocks - 1):
        t += 64
        h = _compress(h, data[i * 64:(i + 1) * 64], t, False)
    last = data[(nblocks - 1) * 64:]
    t += len(last)
    h = _compress(h, last.ljust(64, b"\0"), t, True)
    return struct.pack("<8I", *h)[:outlen]


def hmac_blake2s_ref(key: bytes, data: bytes) -> bytes:
    """RFC 2104 HMAC written out by hand over BLAKE2s (block size 64, output 32)."""
    if len(key) > 64:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(64, b"\0")
    inner = hashlib.blake2s(bytes(k ^ 0x36 for k in key) + data).digest()
    return hashlib.blake2s(bytes(k ^ 0x5C for k in key) + inner).digest()


def kdf_ref(key: bytes, data: bytes, n: int) -> list[bytes]:
    """KDF_n of the WireGuard paper (section 5.2):
    tau0 = HMAC(key, input), tau1 = HMAC(tau0, 0x1), tau_i = HMAC(tau0, tau_{i-1} || i)."""
    tau0 = hmac_blake2s_ref(key, data)
    out = [hmac_blake2s_ref(tau0, b"\x01")]
    for i in range(2, n + 1):
        out.append(hmac_blake2s_ref(tau0, out[-1] + bytes([i])))
    return out


def _selftest_seq(n: int, seed: int) -> bytes:
    # RFC 7693 Appendix E: deterministic Fibonacci sequence.
    a = (0xDEAD4BAD * seed) & _M32
    b = 1
    out = bytearray()
    for _ in range(n):
        t = (a + b) & _M32
        a, b = b, t
        out.append((t >> 24) & 0xFF)
    return bytes(out)


def _rfc7693_selftest(b2s) -> bytes:
    """The grand hash of RFC 7693 Appendix E; `b2s(data, key, outlen)` is the function tested."""
    grand = b""
    for outlen in (16, 20, 28, 32):
        for inlen in (0, 3, 64, 65, 255, 1024):
            data = _selftest_seq(inlen, inlen)
            grand += b2s(data, b"", outlen)
            grand += b2s(data, _selftest_seq(outlen, outlen), outlen)
    return b2s(grand, b"", 32)


# RFC 7693 Appendix E, blake2s_res (also in nettle's testsuite/blake2s-test.c).
RFC7693_SELFTEST = bytes.fromhex("6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe")
KAT_KEY = bytes(range(32))


# ---------------------------------------------------------------- BLAKE2s


def test_blake2s_reference_matches_rfc7693_vectors():
    # RFC 7693 Appendix B: BLAKE2s-256("abc").
    abc = bytes.fromhex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    assert blake2s_ref(b"abc") == abc
    assert _rfc7693_selftest(blake2s_ref) == RFC7693_SELFTEST


def test_hash_is_blake2s_256_rfc7693_abc():
    # RFC 7693 Appendix B.
    assert crypto.hash_(b"abc") == bytes.fromhex(
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    # hash_ of several parts is the hash of their concatenation.
    assert crypto.hash_(b"a", b"", b"bc") == crypto.hash_(b"abc")
    assert crypto.hash_() == blake2s_ref(b"")


@pytest.mark.parametrize("msg, expected", [
    # BLAKE2 reference repository, testvectors/blake2s-kat.txt (key 00..1f), as quoted in
    # nettle's testsuite/blake2s-test.c.
    (b"", "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49"),
    (b"\x00", "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1"),
    (b"\x00\x01", "6bb71300644cd3991b26ccd4d274acd1adeab8b1d7914546c1198bbe9fc9d803"),
    (bytes(range(32)), "c03bc642b20959cbe133a0303e0c1abff3e31ec8e1a328ec8565c36decff5265"),
    (bytes(range(33)), "2c3e08176f760c6264c3a2cd66fec6c3d78de43fc192457b2a4a660a1e0eb22b"),
    (bytes(range(255)), "3fb735061abc519dfe979e54c1ee5bfad0a9d858b3315bad34bde999efd724dd"),
])
def test_keyed_blake2s_kat(msg, expected):
    assert blake2s_ref(msg, KAT_KEY) == bytes.fromhex(expected)


def test_mac_is_keyed_blake2s_with_16_byte_output():
    # MAC(key, input) = Keyed-Blake2s(key, input, 16) (paper section 5.4); a 16-byte
    # BLAKE2s is a different function from a truncated 32-byte one (outlen is in the
    # parameter block), which the RFC 7693 self-test covers.
    def b2s_with_mac(data, key, outlen):
        if key and outlen == 16:
            return crypto.mac(key, data)
        return hashlib.blake2s(data, key=key, digest_size=outlen).digest()

    assert _rfc7693_selftest(b2s_with_mac) == RFC7693_SELFTEST
    for key in (KAT_KEY, bytes(32), b"\xff" * 32):
        for msg in (b"", b"x", bytes(116), bytes(range(256)) * 3):
            got = crypto.mac(key, msg)
            assert len(got) == 16
            assert got == blake2s_ref(msg, key, 16)
            assert got != blake2s_ref(msg, key, 32)[:16]


# ---------------------------------------------------------------- HMAC and KDF


@pytest.mark.parametrize("key, msg", [
    (b"", b""),
    (bytes(32), b"WireGuard"),
    (KAT_KEY, bytes(range(200))),
    (b"k" * 64, b"block-sized key"),
    (b"K" * 100, b"key longer than a block is hashed first"),
])
def test_hmac_blake2s_against_rfc2104_by_hand_and_openssl(key, msg):
    expected = hmac_blake2s_ref(key, msg)
    assert crypto.hmac_(key, msg) == expected
    h = c_hmac.HMAC(key, hashes.BLAKE2s(32))  # OpenSSL's HMAC, a third implementation
    h.update(msg)
    assert h.finalize() == expected


def test_hmac_blake2s_is_not_keyed_blake2s():
    # The Noise KDF uses the HMAC construction, not BLAKE2's own key input.
    assert crypto.hmac_(KAT_KEY, b"abc") != hashlib.blake2s(b"abc", key=KAT_KEY).digest()


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("ck, data", [
    (bytes(32), b""),
    (KAT_KEY, bytes(32)),
    (hashlib.blake2s(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").digest(), b"\x09" + bytes(31)),
])
def test_kdf_matches_paper_definition(ck, data, n):
    out = crypto.kdf(ck, data, n)
    assert out == kdf_ref(ck, data, n)
    assert len(out) == n and all(len(o) == 32 for o in out)
    # It is HKDF (RFC 5869) with salt = chaining key and empty info, here computed by
    # OpenSSL as a further cross-check.
    okm = HKDF(hashes.BLAKE2s(32), 32 * n, salt=ck, info=b"").derive(data)
    assert b"".join(out) == okm


def test_kdf_outputs_are_prefixes_of_each_other():
    ck, data = KAT_KEY, b"input key material"
    k1 = crypto.kdf(ck, data, 1)
    k2 = crypto.kdf(ck, data, 2)
    k3 = crypto.kdf(ck, data, 3)
    assert k3[:2] == k2 and k2[:1] == k1
    assert len(set(k3)) == 3


# ---------------------------------------------------------------- ChaCha20-Poly1305

# RFC 8439 section 2.8.2 ("Example and Test Vector for AEAD_CHACHA20_POLY1305").
RFC8439_KEY = bytes(range(0x80, 0xA0))
RFC8439_NONCE = bytes.fromhex("070000004041424344454647")
RFC8439_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
RFC8439_PT = (b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
              b"for the future, sunscreen would be it.")
RFC8439_CT = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116")
RFC8439_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def test_chacha20poly1305_rfc8439_2_8_2():
    aead = ChaCha20Poly1305(RFC8439_KEY)
    assert aead.encrypt(RFC8439_NONCE, RFC8439_PT, RFC8439_AAD) == RFC8439_CT + RFC8439_TAG
    assert aead.decrypt(RFC8439_NONCE, RFC8439_CT + RFC8439_TAG, RFC8439_AAD) == RFC8439_PT


def test_wireguard_nonce_layout_with_rfc8439_a5_vector():
    # RFC 8439 Appendix A.5 uses nonce 00000000 0102030405060708: four zero bytes then a
    # 64-bit little-endian counter, which is exactly WireGuard's nonce for counter
    # 0x0807060504030201 (paper section 5.4.6). Decrypting it through crypto.aead_decrypt
    # checks the nonce layout against a published vector.
    key = bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
    aad = bytes.fromhex("f33388860000000000004e91")
    ct = bytes.fromhex(
        "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
        "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
        "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
        "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
        "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
        "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
        "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
        "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
        "a6ad5cb4022b02709b")
    tag = bytes.fromhex("eead9d67890cbb22392336fea1851f38")
    counter = 0x0807060504030201
    assert crypto.nonce(counter) == bytes.fromhex("000000000102030405060708")
    plain = crypto.aead_decrypt(key, counter, ct + tag, aad)
    assert plain.startswith(b"Internet-Drafts are draft documents valid for a maximum of six months")
    assert len(plain) == 265
    assert crypto.aead_encrypt(key, counter, plain, aad) == ct + tag
    with pytest.raises(InvalidTag):
        crypto.aead_decrypt(key, counter + 1, ct + tag, aad)


def test_nonce_is_four_zero_bytes_and_le64_counter():
    assert crypto.nonce(0) == bytes(12)
    assert crypto.nonce(1) == b"\0\0\0\0\x01" + bytes(7)
    assert crypto.nonce(2**64 - 1) == b"\0\0\0\0" + b"\xff" * 8


# ---------------------------------------------------------------- HChaCha20 / XChaCha20-Poly1305


def test_hchacha20_draft_irtf_cfrg_xchacha_2_2_1():
    # draft-irtf-cfrg-xchacha-03 section 2.2.1 "Test Vector for the HChaCha20 Block Function".
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = bytes.fromhex("82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    assert crypto.hchacha20(key, nonce) == expected


# draft-irtf-cfrg-xchacha-03 Appendix A "Example and Test Vector for AEAD_XCHACHA20_POLY1305"
# (A.1 in the -03 text; the brief's A.3.1).
XCHACHA_KEY = bytes(range(0x80, 0xA0))
XCHACHA_NONCE = bytes(range(0x40, 0x58))
XCHACHA_AAD = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
XCHACHA_CT = bytes.fromhex(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
    "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
    "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
    "21f9664c97637da9768812f615c68b13b52e")
XCHACHA_TAG = bytes.fromhex("c0875924c1c7987947deafd8780acf49")


def test_xchacha20poly1305_draft_vector():
    sealed = crypto.xaead_encrypt(XCHACHA_KEY, XCHACHA_NONCE, RFC8439_PT, XCHACHA_AAD)
    assert sealed == XCHACHA_CT + XCHACHA_TAG
    assert crypto.xaead_decrypt(XCHACHA_KEY, XCHACHA_NONCE, sealed, XCHACHA_AAD) == RFC8439_PT


@pytest.mark.parametrize("where", ["ciphertext", "tag", "aad", "nonce", "key"])
def test_xchacha20poly1305_rejects_any_change(where):
    key, nonce, aad = bytearray(XCHACHA_KEY), bytearray(XCHACHA_NONCE), bytearray(XCHACHA_AAD)
    sealed = bytearray(XCHACHA_CT + XCHACHA_TAG)
    target = {"ciphertext": sealed, "tag": sealed, "aad": aad, "nonce": nonce, "key": key}[where]
    target[-1 if where == "tag" else 0] ^= 1
    with pytest.raises(InvalidTag):
        crypto.xaead_decrypt(bytes(key), bytes(nonce), bytes(sealed), bytes(aad))


# ---------------------------------------------------------------- X25519

# RFC 7748 section 6.1 (Curve25519 Diffie-Hellman example).
ALICE_PRIV = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIV = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUB = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_x25519_rfc7748_6_1():
    alice, bob = crypto.private_from_bytes(ALICE_PRIV), crypto.private_from_bytes(BOB_PRIV)
    assert crypto.public_of(alice) == ALICE_PUB
    assert crypto.public_of(bob) == BOB_PUB
    assert crypto.dh(alice, BOB_PUB) == SHARED
    assert crypto.dh(bob, ALICE_PUB) == SHARED


def test_dh_with_low_order_point_raises_low_order():
    alice = crypto.private_from_bytes(ALICE_PRIV)
    for u in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(crypto.LowOrderPoint):
            crypto.dh(alice, u)
    assert issubclass(crypto.LowOrderPoint, ValueError)


# ---------------------------------------------------------------- Noise_IKpsk2 constants


# boringtun src/noise/handshake.rs, INITIAL_CHAIN_KEY = HASH(CONSTRUCTION) and
# INITIAL_CHAIN_HASH = HASH(INITIAL_CHAIN_KEY || IDENTIFIER), written there as decimal bytes.
BORINGTUN_INITIAL_CHAIN_KEY = bytes([
    96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6, 248,
    114, 119, 245, 45, 56, 209, 152, 139, 120, 205, 54])
BORINGTUN_INITIAL_CHAIN_HASH = bytes([
    34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102, 34,
    147, 232, 183, 14, 225, 156, 101, 186, 7, 158, 243])


def test_protocol_names_are_the_papers():
    # WireGuard paper section 5.4: CONSTRUCTION, IDENTIFIER, LABEL-MAC1, LABEL-COOKIE.
    assert constants.CONSTRUCTION == b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
    assert constants.IDENTIFIER == b"WireGuard v1 zx2c4 Jason@zx2c4.com"
    assert constants.LABEL_MAC1 == b"mac1----"
    assert constants.LABEL_COOKIE == b"cookie--"


def test_initial_chaining_key_and_hash():
    assert blake2s_ref(constants.CONSTRUCTION) == BORINGTUN_INITIAL_CHAIN_KEY
    assert blake2s_ref(BORINGTUN_INITIAL_CHAIN_KEY + constants.IDENTIFIER) == BORINGTUN_INITIAL_CHAIN_HASH
    assert noise._CK0 == BORINGTUN_INITIAL_CHAIN_KEY
    assert noise._H0 == BORINGTUN_INITIAL_CHAIN_HASH
    # The initiator then mixes in the responder's static public key.
    me = noise.Identity.from_private(ALICE_PRIV)
    assert me.initial_hash_for(BOB_PUB) == blake2s_ref(BORINGTUN_INITIAL_CHAIN_HASH + BOB_PUB)
