"""A DNS server that reads every query and never answers: bench/net/dns_starve.sh points the
resolver at it (127.0.0.1:53), so that each lookup waits for its full timeout."""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
n = 0
while True:
    s.recvfrom(4096)
    n += 1
