# The mitzod binary and its systemd units.
#
# The units in ../systemd are the single source of truth for the hardening:
# they are installed as they are, with ExecStart= pointed at this package's
# binary, and the NixOS module (./module.nix) only adds what differs per host.
{
  lib,
  rustPlatform,
  callPackage,
  # The web app, built from its lock file without network (./web.nix).
  web ? callPackage ./web.nix { },
  # Shown by `GET /api/version`; the flake passes its revision.
  commit ? "unknown",
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
  fs = lib.fileset;
in
rustPlatform.buildRustPackage {
  pname = "mitzod";
  inherit (cargoToml.workspace.package) version;

  # Only what the build reads: a change to the docs, the Python sources or
  # the Nix files does not rebuild the binary. client-py/ is a workspace
  # member, so Cargo needs its manifest and sources to load the workspace.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      # unwrap/expect allowed in tests (the workspace lints deny them elsewhere).
      ../clippy.toml
      (fs.difference ../server (fs.maybeMissing ../server/web/node_modules))
      ../client-py/Cargo.toml
      ../client-py/src
      ../systemd
      (fs.maybeMissing ../examples)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [
    "-p"
    "mitzod"
  ];
  # The daemon and its two library crates (server/sandbox, server/protocol),
  # whose own tests include the generated TypeScript's freshness check.
  cargoTestFlags = [
    "-p"
    "mitzod"
    "-p"
    "mitzo-sandbox"
    "-p"
    "mitzo-protocol"
  ];

  env = {
    # No .git in the sandbox: build.rs takes the commit from here.
    MITZO_BUILD_COMMIT = commit;
    # build.rs embeds this bundle instead of running npm (no network here).
    MITZO_WEB_DIST = "${web}";
  };

  # The test suite runs as its own check (the flake's checks.tests), with the
  # tools it needs; the package build stays lean.
  doCheck = false;

  postInstall = ''
    install -Dm0644 -t $out/lib/systemd/system \
      systemd/mitzod.service systemd/mitzod.socket systemd/mitzod-unix.socket
    substituteInPlace $out/lib/systemd/system/mitzod.service \
      --replace-fail "ExecStart=/usr/bin/mitzod " "ExecStart=$out/bin/mitzod "
    # Not a drop-in of this package (that would switch it on for everyone):
    # the module installs it when services.mitzo.startAsUser is set.
    install -Dm0644 systemd/mitzod-user.conf $out/share/mitzod/mitzod-user.conf
    if [ -e examples/mitzod.toml ]; then
      install -Dm0644 examples/mitzod.toml $out/share/mitzod/examples/mitzod.toml
    fi
  '';

  meta = {
    description = "Hardened self-hosted server for supervising coding-agent sessions";
    license = lib.licenses.mit;
    mainProgram = "mitzod";
    # Landlock, socket activation and the privilege drop are Linux-only.
    platforms = lib.platforms.linux;
  };
}
