"""Start time of `mitzod serve` to the first byte of /healthz: spawn, then
connect in a tight loop until a GET /healthz answers; median of N runs.
Usage: python3 tests/dev_start_time.py BINARY dev|config N
(dev: `serve --dev` in a fresh git dir; config: root start, drop to nobody,
secret files, as deployed). Not a test: figures for the README and issues."""
import os, shutil, socket, statistics, subprocess, sys, tempfile, time

binary, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def first_byte(port, deadline):
    while time.monotonic() < deadline:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            time.sleep(0.0002); continue
        try:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            if c.recv(1):
                return True
        except OSError:
            pass
        finally:
            c.close()
    return False

work = tempfile.mkdtemp(prefix="fh-start-", dir="/tmp"); os.chmod(work, 0o755)
subprocess.run(["git", "init", "-q", work], check=True)
times = []
for i in range(n + 1):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": work, "MITZO_LOG": "warn"}
    if mode == "dev":
        env["MITZOD_LISTEN"] = f'["127.0.0.1:{port}"]'
        cmd = [binary, "serve", "--dev"]
        if os.environ.get("DEV_FIXED_3100"):
            # Binaries from before --dev took MITZOD_*: they always bind 3100.
            port = 3100
    else:
        cfg = os.path.join(work, "c.toml")
        if i == 0:
            jwt = os.path.join(work, "jwt"); open(jwt, "w").write(os.urandom(32).hex()); os.chmod(jwt, 0o600)
            phc = subprocess.run([binary, "hash-passphrase"], input=b"a long enough passphrase", capture_output=True, check=True).stdout.decode().strip()
            user = 'user = "nobody"\n' if os.geteuid() == 0 else ""
            open(cfg, "w").write(f'{user}state_dir = "{work}/state"\njwt_secret_file = "{jwt}"\npassphrase_hash = "{phc}"\nlisten = ["127.0.0.1:PORT"]\n')
            template = open(cfg).read()
        open(cfg, "w").write(template.replace("PORT", str(port)))
        cmd = [binary, "serve", "--config", cfg]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = first_byte(port, t0 + 20)
    dt = time.monotonic() - t0
    p.terminate(); p.wait()
    if not ok:
        sys.exit(f"no answer from {binary} ({mode})")
    if i > 0:  # the first run creates the state and secrets
        times.append(dt * 1000)
shutil.rmtree(work, ignore_errors=True)
print(f"{binary} {mode}: median {statistics.median(times):.1f} ms, min {min(times):.1f}, max {max(times):.1f} (n={n})")
