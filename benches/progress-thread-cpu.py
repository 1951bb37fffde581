#!/usr/bin/env python3
# CPU time of the progress display thread of `mover push` under a pseudo-terminal (issue 17, item 1).
# Usage: benches/progress-thread-cpu.py bar|json|none mover://127.0.0.1:PORT/DIR
# with a `mover serve --insecure-no-auth` listening there. FILE: the file to push (default /tmp/h1t/big.bin,
# 1 GiB); MOVER: the binary (default target/ci/mover). Polls /proc/PID/task/*/stat every 50 ms and keeps
# the last utime+stime of each thread (the display thread is named "progress").
import os, subprocess, sys, time, pty
M=os.environ.get("MOVER", "target/ci/mover")
mode=sys.argv[1]; dest=sys.argv[2]
cmd=[M,"push","--insecure-no-auth","--net","udp","--policy","fixed","--rate","1G","--progress",mode,os.environ.get("FILE", "/tmp/h1t/big.bin"),dest]
m,s=pty.openpty()
import fcntl, termios, struct
fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack("HHHH",40,160,0,0))
env=dict(os.environ, TERM="xterm")
p=subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=s, env=env)
os.close(s)
os.set_blocking(m, False)
out=b""; best={}; t0=time.time()
while p.poll() is None:
    try:
        for tid in os.listdir(f"/proc/{p.pid}/task"):
            try:
                st=open(f"/proc/{p.pid}/task/{tid}/stat").read()
            except OSError: continue
            comm=st[st.index("(")+1:st.rindex(")")]
            f=st[st.rindex(")")+2:].split()
            best[(tid,comm)]=int(f[11])+int(f[12])
    except OSError: pass
    try: out+=os.read(m,65536)
    except OSError: pass
    time.sleep(0.05)
wall=time.time()-t0
tick=os.sysconf("SC_CLK_TCK")
prog=sum(v for (t,c),v in best.items() if c=="progress")
total=sum(best.values())
print(f"mode={mode} wall={wall:.2f}s progress_thread_cpu={prog/tick*1000:.0f}ms all_threads_cpu={total/tick:.2f}s rc={p.returncode} bytes_on_tty={len(out)}")
