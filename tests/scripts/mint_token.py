#!/usr/bin/env python3
# Mints a rendezvous session token as a control plane would, with the lines README.md shows.
#   mint_token.py SECRET_FILE SESSION SIDE TTL
import hashlib, hmac, sys, time

def mint(secret: bytes, session: str, side: str, ttl: int) -> str:
    signed = f"v1.{session}.{side}.{int(time.time()) + ttl}"
    mac = hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()
    return f"{signed}.{mac}"

secret = open(sys.argv[1], "rb").read()
if secret.endswith(b"\r\n"):
    secret = secret[:-2]
elif secret.endswith(b"\n"):
    secret = secret[:-1]
print(mint(secret, sys.argv[2], sys.argv[3], int(sys.argv[4])))
