"""pgmoneta's management frame, written from its description with Python's standard library and
the cryptography package, independently of the Rust code it checks.

frame = compression (1 byte) | encryption (1 byte) | length (4 bytes, big endian) | payload;
payload = JSON, or base64(AES-GCM(compress(JSON))) when a code is set.

usage: management_frame.py make <master-key-file> <compression 0|1|4> <encryption 0-3> <json-file> <out>
       management_frame.py read <master-key-file> <frame-file>     (prints the JSON)
"""
import base64
import bz2
import gzip
import hashlib
import os
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BITS = {1: 256, 2: 192, 3: 128}


def master_key(path):
    lines = open(path, "rb").read().split(b"\n")
    return hashlib.pbkdf2_hmac("sha256", base64.b64decode(lines[0]), base64.b64decode(lines[1]), 600000, 64)


def object_key(master, salt, bits):
    return hashlib.pbkdf2_hmac("sha256", master, salt, 1, 80)[: bits // 8]


def make(master, compression, encryption, text):
    if compression == 0 and encryption == 0:
        payload = text
    else:
        data = {0: lambda d: d, 1: gzip.compress, 4: bz2.compress}[compression](text)
        if encryption:
            salt, iv = os.urandom(16), os.urandom(12)
            data = salt + iv + AESGCM(object_key(master, salt, BITS[encryption])).encrypt(iv, data, None)
        payload = base64.b64encode(data)
    return struct.pack(">BBI", compression, encryption, len(payload)) + payload


def read(master, frame):
    compression, encryption, length = struct.unpack(">BBI", frame[:6])
    payload = frame[6 : 6 + length]
    assert len(payload) == length, "truncated frame"
    if compression == 0 and encryption == 0:
        return payload
    data = base64.b64decode(payload)
    if encryption:
        salt, iv, rest = data[:16], data[16:28], data[28:]
        data = AESGCM(object_key(master, salt, BITS[encryption])).decrypt(iv, rest, None)
    return {0: lambda d: d, 1: gzip.decompress, 4: bz2.decompress}[compression](data)


def main():
    master = master_key(sys.argv[2])
    if sys.argv[1] == "make":
        text = open(sys.argv[5], "rb").read()
        open(sys.argv[6], "wb").write(make(master, int(sys.argv[3]), int(sys.argv[4]), text))
    elif sys.argv[1] == "read":
        sys.stdout.write(read(master, open(sys.argv[3], "rb").read()).decode())
    else:
        sys.exit("unknown command " + sys.argv[1])


main()
