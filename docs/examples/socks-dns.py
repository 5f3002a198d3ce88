"""Ask a DNS server on a private network through `burrow access socks` (SOCKS5 UDP ASSOCIATE): dig cannot.

    python3 socks-dns.py 198.18.5.53 printer.office.test      # SERVER[:PORT] NAME; the proxy on 127.0.0.1:1080
"""
import socket
import struct
import sys

proxy = ("127.0.0.1", 1080)
server, _, port = sys.argv[1].partition(":")
name = sys.argv[2]
control = socket.create_connection(proxy, timeout=5)  # the association lasts while this stays open
control.sendall(b"\x05\x01\x00")                       # SOCKS5, no authentication
assert control.recv(2) == b"\x05\x00"
control.sendall(b"\x05\x03\x00\x01" + bytes(6))        # UDP ASSOCIATE
reply = control.recv(10)
if reply[1] != 0:
    sys.exit(f"refused: SOCKS reply {reply[1]}")
relay = (socket.inet_ntoa(reply[4:8]), int.from_bytes(reply[8:10], "big"))
question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0\0\1\0\1"
query = struct.pack("!6H", 0x4242, 0x0100, 1, 0, 0, 0) + question  # one A question, recursion desired
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.settimeout(5)
udp.sendto(b"\0\0\0\1" + socket.inet_aton(server) + int(port or 53).to_bytes(2, "big") + query, relay)
answer = udp.recv(65535)[10:]                          # after the 10-byte SOCKS UDP header
rcode, answers = answer[3] & 0x0F, struct.unpack("!H", answer[6:8])[0]
print(f"rcode={rcode} answers={answers}" + (f" last={socket.inet_ntoa(answer[-4:])}" if answers else ""))
