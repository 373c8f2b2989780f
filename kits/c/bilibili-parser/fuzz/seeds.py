"""Writes a seed corpus of Bilibili messages into the directory given."""

import json
import struct
import sys
import zlib
from pathlib import Path


def packet(version, operation, body):
    return struct.pack(">IHHII", 16 + len(body), 16, version, operation, 1) + body


def command(body, ascii=False):
    return packet(0, 5, json.dumps(body, ensure_ascii=ascii).encode())


info = [[0, 1, 25, 16777215, 1700000000000], "主播好 \U0001F600", [1001, "u", 0], [], [12, 0]]
messages = [
    command({"cmd": "DANMU_MSG", "info": info}, ascii=True),
    command({"cmd": "DANMU_MSG:4:0:2", "info": info}),
    command({"cmd": "SEND_GIFT", "data": {"uid": 1, "giftId": 3, "total_coin": 100, "timestamp": 1700000000}}),
    command({"cmd": "INTERACT_WORD", "data": {"uid": 2, "msg_type": 1, "timestamp": 1700000000}}),
    packet(1, 3, struct.pack(">I", 12345)),
    command({"cmd": "LIVE"}),
]
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for i, message in enumerate(messages):
    (out / f"message-{i}").write_bytes(message)
(out / "zlib").write_bytes(packet(2, 5, zlib.compress(b"".join(messages))))
(out / "zlib-9").write_bytes(packet(2, 5, zlib.compress(b"".join(messages) * 20, 9)))
