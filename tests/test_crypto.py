"""WeChat message crypto: Tencent's own sample, rotation, tampering."""
import base64
import json
from pathlib import Path

import pytest
from wechatpy.crypto import WeChatCrypto

from bot.config import aes_key_bytes
from bot.crypto import DecryptError, MessageCrypto, SignatureError, check_signature, signature
from bot.wire import parse_xml

# Tencent's own sample, vendored so that a bare clone needs nothing outside the repository.
VECTOR = json.loads((Path(__file__).resolve().parent / "data" / "official-vector.json").read_text(encoding="utf-8"))
KEY2 = base64.b64encode(b"another-32-byte-key-for-rotation").decode().rstrip("=")


def vector_crypto(*extra_keys: str) -> MessageCrypto:
    keys = [aes_key_bytes(VECTOR["encoding_aes_key"]), *(aes_key_bytes(k) for k in extra_keys)]
    return MessageCrypto(VECTOR["token"], keys, VECTOR["appid"])


def test_official_vector_decrypts_to_its_plaintext():
    v = VECTOR
    dec = vector_crypto().decrypt(v["encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])
    assert dec.xml == v["plaintext"]
    assert dec.key_index == 0


def test_official_vector_signatures():
    v = VECTOR
    assert check_signature(v["token"], v["signature"], v["timestamp"], v["nonce"])
    assert check_signature(v["token"], v["msg_signature"], v["timestamp"], v["nonce"], v["encrypt"])
    assert not check_signature(v["token"], v["signature"][:-1] + "0", v["timestamp"], v["nonce"])
    assert not check_signature(v["token"], None, v["timestamp"], v["nonce"])


def test_decrypt_uses_msg_signature_not_signature():
    v = VECTOR
    with pytest.raises(SignatureError):
        vector_crypto().decrypt(v["encrypt"], v["signature"], v["timestamp"], v["nonce"])


def test_reply_envelope_is_readable_by_wechatpy():
    crypto = vector_crypto()
    envelope = crypto.encrypt("<xml><Content><![CDATA[你好]]></Content></xml>", nonce="123", timestamp="1409735670")
    fields = parse_xml(envelope)
    assert fields["MsgSignature"] == signature(VECTOR["token"], "1409735670", "123", fields["Encrypt"])
    other = WeChatCrypto(VECTOR["token"], VECTOR["encoding_aes_key"], VECTOR["appid"])
    assert "你好" in other.decrypt_message(envelope, fields["MsgSignature"], "1409735670", "123")


def test_previous_key_still_decrypts_during_rotation():
    old = WeChatCrypto(VECTOR["token"], VECTOR["encoding_aes_key"], VECTOR["appid"])
    envelope = parse_xml(old.encrypt_message("<xml><Content>x</Content></xml>", "55", "1409735670"))
    rotated = MessageCrypto(VECTOR["token"], [aes_key_bytes(KEY2), aes_key_bytes(VECTOR["encoding_aes_key"])], VECTOR["appid"])
    dec = rotated.decrypt(envelope["Encrypt"], envelope["MsgSignature"], "1409735670", "55")
    assert dec.key_index == 1 and "<Content>x</Content>" in dec.xml
    # ... and the reply goes back under the key that worked.
    envelope = rotated.encrypt("<xml><Content>ok</Content></xml>", key_index=dec.key_index, nonce="1", timestamp="2")
    assert "ok" in old.decrypt_message(envelope, parse_xml(envelope)["MsgSignature"], "2", "1")


def test_wrong_key_or_appid_is_refused():
    v = VECTOR
    wrong_key = MessageCrypto(v["token"], [aes_key_bytes(KEY2)], v["appid"])
    with pytest.raises(DecryptError):
        wrong_key.decrypt(v["encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])
    wrong_app = MessageCrypto(v["token"], [aes_key_bytes(v["encoding_aes_key"])], "wx0000000000000000")
    with pytest.raises(DecryptError):
        wrong_app.decrypt(v["encrypt"], v["msg_signature"], v["timestamp"], v["nonce"])


def test_tampered_ciphertext_is_refused():
    # CBC is malleable, so flip a byte of the last blocks, where the AppID and padding live.
    v = VECTOR
    enc = v["encrypt"]
    tampered = enc[:-10] + ("A" if enc[-10] != "A" else "B") + enc[-9:]
    sig = signature(v["token"], v["timestamp"], v["nonce"], tampered)
    with pytest.raises(DecryptError):
        vector_crypto().decrypt(tampered, sig, v["timestamp"], v["nonce"])


def test_random_prefix_differs_between_encryptions():
    crypto = vector_crypto()
    a = parse_xml(crypto.encrypt("<xml/>", nonce="1", timestamp="1"))["Encrypt"]
    b = parse_xml(crypto.encrypt("<xml/>", nonce="1", timestamp="1"))["Encrypt"]
    assert a != b
