"""pgmoneta's AES-GCM format, written from its description with Python's cryptography package
and hashlib, independently of the Rust code it checks.

usage: upstream_format.py encrypt|decrypt <master-key-file> <bits> <in> <out>
       upstream_format.py vault-entry <master-key-file> <user> <password>   (prints user:base64)
       upstream_format.py vault-password <master-key-file> <vault-line>     (prints the password)
"""
import base64
import hashlib
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def master_key(path):
    lines = open(path, "rb").read().split(b"\n")
    text = base64.b64decode(lines[0])
    salt = base64.b64decode(lines[1])
    return hashlib.pbkdf2_hmac("sha256", text, salt, 600000, 64)


def object_key(master, salt, bits):
    return hashlib.pbkdf2_hmac("sha256", master, salt, 1, 80)[: bits // 8]


def encrypt(master, bits, plaintext):
    salt = os.urandom(16)
    iv = os.urandom(12)
    return salt + iv + AESGCM(object_key(master, salt, bits)).encrypt(iv, plaintext, None)


def decrypt(master, bits, data):
    salt, iv, rest = data[:16], data[16:28], data[28:]
    return AESGCM(object_key(master, salt, bits)).decrypt(iv, rest, None)


def main():
    cmd = sys.argv[1]
    master = master_key(sys.argv[2])
    if cmd == "encrypt":
        data = open(sys.argv[4], "rb").read()
        open(sys.argv[5], "wb").write(encrypt(master, int(sys.argv[3]), data))
    elif cmd == "decrypt":
        data = open(sys.argv[4], "rb").read()
        open(sys.argv[5], "wb").write(decrypt(master, int(sys.argv[3]), data))
    elif cmd == "vault-entry":
        sealed = encrypt(master, 256, sys.argv[4].encode())
        print(sys.argv[3] + ":" + base64.b64encode(sealed).decode())
    elif cmd == "vault-password":
        user, secret = sys.argv[3].strip().split(":", 1)
        print(decrypt(master, 256, base64.b64decode(secret)).decode())
    else:
        sys.exit("unknown command " + cmd)


main()
