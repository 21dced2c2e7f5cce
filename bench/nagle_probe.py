# Whether a server's GETs wait for the client's delayed ACK (BENCHMARKS.md "Why some GETs
# take 40 ms"): N GETs of one object on one kept-alive connection (TCP_NODELAY set, as
# pgdrill's HTTP client sets it), first as any client reads, then re-arming TCP_QUICKACK
# before every read (which hyper/reqwest cannot do). Prints each set's latencies in ms,
# sorted. Needs a server that answers unsigned GETs (s3s-fs started without keys).
# Usage: python3 nagle_probe.py PORT /bucket/key [N]
import socket, sys, time
PORT, PATH = int(sys.argv[1]), sys.argv[2].encode()
N = int(sys.argv[3]) if len(sys.argv) > 3 else 10
def run(quick):
    s = socket.create_connection(('127.0.0.1', PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(N):
        t = time.time()
        s.sendall(b'GET ' + PATH + b' HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        buf, want = b'', None
        while want is None or len(buf) < want:
            if quick:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            d = s.recv(65536)
            if not d:
                raise EOFError
            buf += d
            if want is None and b'\r\n\r\n' in buf:
                head, _, _ = buf.partition(b'\r\n\r\n')
                n = [int(l.split(b':')[1]) for l in head.split(b'\r\n') if l.lower().startswith(b'content-length:')]
                want = len(head) + 4 + (n[0] if n else 0)
        out.append((time.time() - t) * 1000)
    s.close()
    return sorted(out)
for quick in (False, True):
    print('TCP_QUICKACK' if quick else 'default     ', ' '.join('%.1f' % x for x in run(quick)))
