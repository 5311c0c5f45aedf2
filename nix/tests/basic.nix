# NixOS VM test of the module: socket activation, login, the hardening score,
# the agent sandbox, a session created the way a SessionStart hook creates
# one (kept across a restart, with its worktree), the web page, and the
# internal token across a restart.
# Runs where Nix and KVM are: `nix build .#checks.x86_64-linux.vm-basic`.
# Elsewhere tests/deploy/check-vm-script parses and pyflakes-checks the
# script below.
{
  lib,
  pkgs,
  module,
}:
pkgs.testers.runNixOSTest {
  name = "mitzod-basic";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [ module ];

      services.mitzo = {
        enable = true;
        repos.demo = "/srv/demo";
        # Written by the test script below, before the first connection:
        # LoadCredential= reads them when the service starts, not at boot.
        credentials = {
          jwt-secret = "/run/keys/mitzo/jwt-secret";
          passphrase-hash = "/run/keys/mitzo/passphrase-hash";
        };
      };

      # The repository must exist before mitzod starts (BindPaths=).
      systemd.tmpfiles.rules = [ "d /srv/demo 0755 mitzo mitzo - -" ];

      environment.systemPackages = [
        pkgs.curl
        pkgs.git
        pkgs.iproute2
        pkgs.openssl
      ];
    };

  testScript = ''
    import json

    passphrase = "correct horse battery staple"
    base = "http://127.0.0.1:3100"

    machine.wait_for_unit("sockets.target")
    machine.wait_for_unit("mitzod.socket")

    with subtest("the socket listens and the service is not running"):
        # Without connecting: a connection would start the service.
        machine.succeed("systemctl is-active mitzod.socket")
        machine.wait_until_succeeds("ss -Hltn 'sport = :3100' | grep -q 127.0.0.1:3100")
        machine.require_unit_state("mitzod.service", "inactive")

    with subtest("credentials and the repository are in place"):
        machine.succeed(
            "install -d -m 0700 /run/keys/mitzo",
            "openssl rand -hex 32 > /run/keys/mitzo/jwt-secret",
            f"printf %s '{passphrase}' | mitzod hash-passphrase > /run/keys/mitzo/passphrase-hash",
            "chmod 0400 /run/keys/mitzo/*",
            "runuser -u mitzo -- git init -q -b main /srv/demo",
            "runuser -u mitzo -- sh -c 'echo demo > /srv/demo/README'",
            "runuser -u mitzo -- git -C /srv/demo add README",
            "runuser -u mitzo -- git -C /srv/demo -c user.name=test -c user.email=test@localhost commit -q -m init",
        )
        machine.require_unit_state("mitzod.service", "inactive")

    with subtest("the first connection starts the service"):
        machine.succeed(f"curl -sf {base}/healthz")
        machine.wait_for_unit("mitzod.service")
        # It dropped to the service user: every uid is mitzo's, no capability
        # is left, NO_NEW_PRIVS is set.
        pid = machine.succeed("systemctl show -P MainPID mitzod.service").strip()
        want = machine.succeed("id -u mitzo").strip()
        status = machine.succeed(f"cat /proc/{pid}/status")
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split() == [want] * 4, f"Uid: {fields['Uid']}"
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
            assert int(fields[cap].strip(), 16) == 0, f"{cap}: {fields[cap]}"
        assert fields["NoNewPrivs"].strip() == "1"

    with subtest("login with the passphrase from the credential"):
        out = machine.succeed(
            f"curl -sf -H 'Content-Type: application/json' -d '{json.dumps({'passphrase': passphrase})}' {base}/api/auth/login"
        )
        token = json.loads(out)["token"]
        check = machine.succeed(f"curl -sf -H 'Authorization: Bearer {token}' {base}/api/auth/check")
        assert json.loads(check)["ok"] is True
        machine.fail(
            f"curl -sf -H 'Content-Type: application/json' -d '{json.dumps({'passphrase': 'wrong'})}' {base}/api/auth/login"
        )

    with subtest("the web page answers at /"):
        answer = machine.succeed(f"curl -s -o /dev/null -w '%{{http_code}} %{{content_type}}' {base}/").strip()
        code, _, content_type = answer.partition(" ")
        assert code == "200", f"GET / answered {answer}"
        assert content_type.startswith("text/html"), f"GET / content type: {content_type}"

    with subtest("a session created with the internal token, as a SessionStart hook does"):
        internal = "-H \"X-Internal-Token: $(cat /var/lib/mitzo/internal-token)\""
        # The control: without the token the same request is refused.
        machine.fail(
            f"curl -sf -H 'Content-Type: application/json' -d '{{\"source\": \"claude-code\"}}' {base}/api/sessions"
        )
        out = machine.succeed(
            f"curl -sf {internal} -H 'Content-Type: application/json' -d '{{\"source\": \"claude-code\"}}' {base}/api/sessions"
        )
        created = json.loads(out)
        session_id = created["sessionId"]
        worktree = created["worktrees"]["primary"]["path"]
        assert created["isolation"] is True, f"session not isolated: {created}"
        machine.succeed(f"test -f {worktree}/README")
        assert worktree == f"/srv/demo/.mitzo/checkouts/{session_id}", f"checkout path: {worktree}"
        head = machine.succeed(f"runuser -u mitzo -- git -C {worktree} rev-parse --abbrev-ref HEAD").strip()
        assert head == f"session/{session_id}", f"{worktree} is on {head}, not session/{session_id}"

    with subtest("systemd-analyze security is under the threshold"):
        # The default agent.network ("proxy") keeps the package unit's
        # RestrictNamespaces=user net: exposure 2.4, the root-start limit of
        # tests/deploy/check-units (check-vm-script keeps the two equal).
        print(machine.succeed("systemd-analyze security --no-pager mitzod.service"))
        machine.succeed("systemd-analyze security --no-pager --threshold=24 mitzod.service")
        # The module adds nothing to the unit's cgroup settings: the
        # package's Delegate=yes and ProtectControlGroups=yes apply as shipped.
        assert machine.succeed("systemctl show -P Delegate mitzod.service").strip() == "yes"
        assert machine.succeed("systemctl show -P ProtectControlGroups mitzod.service").strip() == "yes"

    with subtest("an agent cannot write outside its repository"):
        # The policy shape mitzod gives an agent, as `mitzod sandbox-exec`
        # reads it (JSON): read-write on the repository, the system
        # read-only or read-and-execute.
        policy = {
            "policy": {
                "read_write": ["/srv/demo"],
                "read_exec": ["/nix/store", "/run/current-system"],
                "read_only": ["/etc"],
                "connect_tcp": [],
            }
        }
        machine.succeed(
            f"cat > /tmp/policy.json <<'EOF'\n{json.dumps(policy)}\nEOF",
            "chmod 0644 /tmp/policy.json",
        )
        sandboxed = "runuser -u mitzo -- mitzod sandbox-exec --policy /tmp/policy.json -- "
        # Inside: allowed. (Also proves the policy was understood, so the
        # denials below are the sandbox's doing.)
        machine.succeed(sandboxed + "sh -c 'echo ok > /srv/demo/inside'")
        machine.succeed("test -s /srv/demo/inside")
        # Outside, in a place the mitzo user may write without the sandbox:
        # its own state directory.
        machine.succeed("runuser -u mitzo -- sh -c 'echo x > /var/lib/mitzo/probe && rm /var/lib/mitzo/probe'")
        machine.fail(sandboxed + "sh -c 'echo x > /var/lib/mitzo/probe'")
        machine.fail("test -e /var/lib/mitzo/probe")
        machine.succeed("runuser -u mitzo -- cat /var/lib/mitzo/internal-token")
        machine.fail(sandboxed + "cat /var/lib/mitzo/internal-token")
        machine.fail(sandboxed + "sh -c 'echo x > /etc/x'")
        machine.fail("test -e /etc/x")

    with subtest("the internal token and the session survive a restart"):
        before = machine.succeed("cat /var/lib/mitzo/internal-token").strip()
        assert len(before) == 64, f"internal token has length {len(before)}"
        assert machine.succeed("stat -c '%U %a' /var/lib/mitzo/internal-token").strip() == "mitzo 600"
        assert machine.succeed("stat -c '%U %a' /var/lib/mitzo").strip() == "mitzo 700"
        machine.succeed("systemctl restart mitzod.service")
        machine.wait_for_unit("mitzod.service")
        machine.succeed(f"curl -sf {base}/healthz")
        after = machine.succeed("cat /var/lib/mitzo/internal-token").strip()
        assert before == after, "the internal token changed across a restart"
        meta = json.loads(machine.succeed(f"curl -sf {internal} {base}/api/sessions/{session_id}/meta"))
        assert meta["worktrees"]["primary"]["path"] == worktree, f"session {session_id} after the restart: {meta}"
        machine.succeed(f"test -f {worktree}/README")
        listed = json.loads(machine.succeed(f"curl -sf {internal} {base}/api/sessions"))
        ids = [s["id"] for s in listed["sessions"]]
        assert session_id in ids, f"session {session_id} not listed after the restart: {ids}"
  '';
}
